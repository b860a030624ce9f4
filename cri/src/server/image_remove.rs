//! RemoveImage.

use berth_proto::cri::{RemoveImageRequest, RemoveImageResponse};
use tonic::Status;

use super::CriImageService;

impl CriImageService {
    /// Removes the image with all its names. An unknown image is not an error, because the
    /// kubelet retries removals and expects them to be idempotent.
    pub(super) async fn remove(
        &self,
        request: RemoveImageRequest,
    ) -> Result<RemoveImageResponse, Status> {
        let image = request.image.map(|spec| spec.image).unwrap_or_default();
        if image.trim().is_empty() {
            return Err(Status::invalid_argument(
                "RemoveImage needs image.image: an image reference or ID",
            ));
        }
        self.0.images.remove(&image).await?;
        Ok(RemoveImageResponse {})
    }
}
