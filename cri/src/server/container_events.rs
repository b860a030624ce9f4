//! ReopenContainerLog and GetContainerEvents.

use berth_proto::cri::{
    ContainerEventResponse, GetEventsRequest, ReopenContainerLogRequest, ReopenContainerLogResponse,
};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tonic::Status;

use super::{CriRuntimeService, ResponseStream};

impl CriRuntimeService {
    pub(super) async fn reopen_container_log(
        &self,
        request: ReopenContainerLogRequest,
    ) -> Result<ReopenContainerLogResponse, Status> {
        self.runtime()?.reopen_log(&request.container_id)?;
        Ok(ReopenContainerLogResponse {})
    }

    /// Streams container created, started, stopped and deleted events from now on. A
    /// subscriber too slow to keep up loses the oldest events, which is logged.
    pub(super) async fn get_container_events(
        &self,
        _request: GetEventsRequest,
    ) -> Result<ResponseStream<ContainerEventResponse>, Status> {
        let events =
            BroadcastStream::new(self.runtime()?.subscribe()).filter_map(|event| match event {
                Ok(event) => Some(Ok(event)),
                Err(err) => {
                    tracing::warn!(error = %err, "a container event subscriber fell behind");
                    None
                }
            });
        Ok(Box::pin(events))
    }
}
