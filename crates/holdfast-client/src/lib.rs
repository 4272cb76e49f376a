//! Typed async client for holdfast: follows the leader, retries with request ids
