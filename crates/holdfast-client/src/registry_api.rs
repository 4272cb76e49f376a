//! Record calls on the client: put, delete, get, history, scan.

use holdfast_proto::v1 as pb;
use pb::registry_client::RegistryClient;
use tonic::Response;

use crate::client::Client;
use crate::error::ClientError;
use crate::record::{
    consistency_to_pb, resolve_request_id, write_options_to_pb, Consistency, HistoryPage, ReadOptions, Record,
    ScanPage, WriteOptions, WriteResult,
};
use crate::retry::Route;

impl Client {
    /// Writes `value` as the record's new revision.
    ///
    /// On failure, [`ClientError::outcome`] says whether the write may have
    /// been applied. Every retry, here or by the caller with the same
    /// `request_id`, is applied at most once.
    pub async fn put(
        &self,
        registry: &str,
        record_id: impl AsRef<[u8]>,
        value: impl Into<Vec<u8>>,
        options: WriteOptions,
    ) -> Result<WriteResult, ClientError> {
        let request_id = resolve_request_id(&options);
        // Built once: each attempt sends a clone, so the id never changes.
        let request = pb::PutRequest {
            registry: registry.to_owned(),
            record_id: record_id.as_ref().to_vec(),
            value: value.into(),
            options: Some(write_options_to_pb(&options, &request_id)),
        };
        let policy = self.idempotent_policy(Route::Leader);
        let response = self
            .call(policy, |channel| {
                let request = request.clone();
                async move { RegistryClient::new(channel).put(request).await.map(Response::into_inner) }
            })
            .await?;
        Ok(WriteResult { revision: response.revision, duplicate: response.duplicate, request_id })
    }

    /// Writes a tombstone revision; the record's history stays readable.
    pub async fn delete(
        &self,
        registry: &str,
        record_id: impl AsRef<[u8]>,
        options: WriteOptions,
    ) -> Result<WriteResult, ClientError> {
        let request_id = resolve_request_id(&options);
        let request = pb::DeleteRequest {
            registry: registry.to_owned(),
            record_id: record_id.as_ref().to_vec(),
            options: Some(write_options_to_pb(&options, &request_id)),
        };
        let policy = self.idempotent_policy(Route::Leader);
        let response = self
            .call(policy, |channel| {
                let request = request.clone();
                async move { RegistryClient::new(channel).delete(request).await.map(Response::into_inner) }
            })
            .await?;
        Ok(WriteResult { revision: response.revision, duplicate: response.duplicate, request_id })
    }

    /// Reads a record (`Ok(None)` when it does not exist). A tombstone at the
    /// requested revision comes back as a record with `deleted` set, if the
    /// server returns it.
    pub async fn get(
        &self,
        registry: &str,
        record_id: impl AsRef<[u8]>,
        options: ReadOptions,
    ) -> Result<Option<Record>, ClientError> {
        let request = pb::GetRequest {
            registry: registry.to_owned(),
            record_id: record_id.as_ref().to_vec(),
            consistency: consistency_to_pb(options.consistency),
            at_revision: options.at_revision.unwrap_or(0),
        };
        let policy = self.idempotent_policy(route_for(options.consistency));
        let answer = self
            .call(policy, |channel| {
                let request = request.clone();
                async move { RegistryClient::new(channel).get(request).await.map(Response::into_inner) }
            })
            .await;
        match answer {
            Ok(response) => Ok(response.record.map(Record::from)),
            Err(ClientError::NotFound(_)) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// One page of a record's revisions after `after_revision` (0 = from the
    /// first), at most `limit` (0 = the server's default page size). Reads
    /// linearizably from the leader.
    pub async fn history(
        &self,
        registry: &str,
        record_id: impl AsRef<[u8]>,
        after_revision: u64,
        limit: u32,
    ) -> Result<HistoryPage, ClientError> {
        let request = pb::HistoryRequest {
            registry: registry.to_owned(),
            record_id: record_id.as_ref().to_vec(),
            after_revision,
            limit,
            consistency: consistency_to_pb(Consistency::Linearizable),
        };
        let policy = self.idempotent_policy(Route::Leader);
        let response = self
            .call(policy, |channel| {
                let request = request.clone();
                async move { RegistryClient::new(channel).history(request).await.map(Response::into_inner) }
            })
            .await?;
        Ok(HistoryPage::from(response))
    }

    /// One page of a registry's records, starting at `page_token` (`None` to
    /// start), at most `limit` (0 = the server's default). Reads
    /// linearizably from the leader.
    pub async fn scan(&self, registry: &str, page_token: Option<&[u8]>, limit: u32) -> Result<ScanPage, ClientError> {
        let request = pb::ScanRequest {
            registry: registry.to_owned(),
            page_token: page_token.map(<[u8]>::to_vec).unwrap_or_default(),
            limit,
            consistency: consistency_to_pb(Consistency::Linearizable),
        };
        let policy = self.idempotent_policy(Route::Leader);
        let response = self
            .call(policy, |channel| {
                let request = request.clone();
                async move { RegistryClient::new(channel).scan(request).await.map(Response::into_inner) }
            })
            .await?;
        ScanPage::try_from(response)
    }
}

/// Linearizable reads need the leader; stale reads take any replica.
fn route_for(consistency: Consistency) -> Route {
    match consistency {
        Consistency::Linearizable => Route::Leader,
        Consistency::Stale => Route::Any,
    }
}
