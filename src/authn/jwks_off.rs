// Remote key sets without the `remote-keys` feature: `jwks_uri` and `discovery` are load
// errors, so `RemoteKeys` is never built and its methods never run.

use std::sync::Arc;
use std::time::Duration;

use super::keys::{KeySet, Refreshed};

/// Never built: it has no values.
pub(crate) enum RemoteKeys {}

impl RemoteKeys {
    pub(crate) fn current(&self) -> Arc<KeySet> {
        match *self {}
    }

    pub(crate) fn ensure_background(self: &Arc<Self>) {
        match **self {}
    }

    pub(crate) async fn refresh(self: &Arc<Self>) -> Refreshed {
        match **self {}
    }

    pub(crate) fn retry_after(&self) -> Duration {
        match *self {}
    }
}
