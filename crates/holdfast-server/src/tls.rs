//! Transport security. (Placeholder until TLS lands: no identities.)

/// The identity in the client certificate of `request`'s connection.
pub fn peer_identity<T>(_request: &tonic::Request<T>) -> Option<String> {
    None
}
