//! ExecSync.

use berth_proto::cri::{ExecSyncRequest, ExecSyncResponse};
use tonic::Status;

use super::CriRuntimeService;

impl CriRuntimeService {
    /// Runs the command and returns its output; a non-zero exit is a result, not an error.
    pub(super) async fn exec_sync(
        &self,
        request: ExecSyncRequest,
    ) -> Result<ExecSyncResponse, Status> {
        let output = self
            .runtime()?
            .exec_sync(&request.container_id, &request.cmd, request.timeout)
            .await?;
        Ok(ExecSyncResponse {
            stdout: output.stdout,
            stderr: output.stderr,
            exit_code: output.exit_code,
        })
    }
}
