//! PullImage.

use berth_proto::cri::{AuthConfig, PullImageRequest, PullImageResponse};
use tonic::Status;
use tracing::Instrument;

use super::CriImageService;
use crate::image::Credentials;

impl CriImageService {
    /// Pulls the image and returns its ID as `image_ref`, as containerd does.
    pub(super) async fn pull(
        &self,
        request: PullImageRequest,
    ) -> Result<PullImageResponse, Status> {
        let image = request.image.map(|spec| spec.image).unwrap_or_default();
        if image.trim().is_empty() {
            return Err(Status::invalid_argument(
                "PullImage needs image.image: an image reference such as docker.io/library/busybox:latest",
            ));
        }
        let credentials = request.auth.map(credentials_of);
        let span = tracing::info_span!("PullImage", image = %image);
        let record = self
            .0
            .images
            .pull(&image, credentials.as_ref())
            .instrument(span)
            .await?;
        Ok(PullImageResponse {
            image_ref: record.id,
        })
    }
}

fn credentials_of(auth: AuthConfig) -> Credentials {
    Credentials {
        username: auth.username,
        password: auth.password,
        auth: auth.auth,
        server_address: auth.server_address,
        identity_token: auth.identity_token,
        registry_token: auth.registry_token,
    }
}
