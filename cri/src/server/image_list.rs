//! ListImages and StreamImages: every image, or the one a filter names.

use berth_proto::cri::{
    Image, ImageFilter, ListImagesRequest, ListImagesResponse, StreamImagesRequest,
    StreamImagesResponse,
};
use tonic::Status;

use super::image_status::to_cri_image;
use super::{CriImageService, ResponseStream};

/// Images per StreamImages message, to keep each message far below the gRPC size limit.
const STREAM_BATCH: usize = 256;

impl CriImageService {
    pub(super) async fn list(
        &self,
        request: ListImagesRequest,
    ) -> Result<ListImagesResponse, Status> {
        Ok(ListImagesResponse {
            images: self.filtered(request.filter).await?,
        })
    }

    pub(super) async fn stream(
        &self,
        request: StreamImagesRequest,
    ) -> Result<ResponseStream<StreamImagesResponse>, Status> {
        let images = self.filtered(request.filter).await?;
        let batches: Vec<Result<StreamImagesResponse, Status>> = images
            .chunks(STREAM_BATCH)
            .map(|chunk| {
                Ok(StreamImagesResponse {
                    images: chunk.to_vec(),
                })
            })
            .collect();
        Ok(Box::pin(futures::stream::iter(batches)))
    }

    /// Returns every image, or only the image the filter's reference or ID names.
    async fn filtered(&self, filter: Option<ImageFilter>) -> Result<Vec<Image>, Status> {
        let wanted = filter
            .and_then(|filter| filter.image)
            .map(|spec| spec.image)
            .filter(|image| !image.is_empty());
        let images = self.0.images.clone();
        let records = tokio::task::spawn_blocking(move || match wanted {
            Some(name) => images.find(&name).map(|found| found.into_iter().collect()),
            None => images.list(),
        })
        .await
        .map_err(|err| Status::internal(format!("image listing task failed: {err}")))??;
        Ok(records.iter().map(to_cri_image).collect())
    }
}
