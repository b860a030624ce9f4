//! Exec, Attach and PortForward: each validates its request and returns a single-use URL on
//! the streaming server, which the client opens to run the session.

use berth_proto::cri::{
    AttachRequest, AttachResponse, ExecRequest, ExecResponse, PortForwardRequest,
    PortForwardResponse,
};
use tonic::{Code, Status};

use super::CriRuntimeService;
use crate::stream::StreamError;

impl CriRuntimeService {
    /// Returns the URL of an exec session. A container that is not running is
    /// FAILED_PRECONDITION, as the kubelet expects.
    pub(super) async fn exec(&self, request: ExecRequest) -> Result<ExecResponse, Status> {
        let url = self.0.streams.exec_url(request)?;
        Ok(ExecResponse { url })
    }

    /// Returns the URL of an attach session.
    pub(super) async fn attach(&self, request: AttachRequest) -> Result<AttachResponse, Status> {
        let url = self.0.streams.attach_url(request)?;
        Ok(AttachResponse { url })
    }

    /// Returns the URL of a port-forward session to the pod's network namespace.
    pub(super) async fn port_forward(
        &self,
        request: PortForwardRequest,
    ) -> Result<PortForwardResponse, Status> {
        let url = self.0.streams.port_forward_url(request)?;
        Ok(PortForwardResponse { url })
    }
}

impl From<StreamError> for Status {
    fn from(err: StreamError) -> Self {
        let code = match err {
            StreamError::Runtime(runtime) => return runtime.into(),
            StreamError::InvalidArgument { .. } => Code::InvalidArgument,
            StreamError::Bind { .. } | StreamError::Io { .. } => Code::Internal,
            StreamError::ClientGone | StreamError::IdleTimeout { .. } => Code::Aborted,
        };
        Status::new(code, err.to_string())
    }
}
