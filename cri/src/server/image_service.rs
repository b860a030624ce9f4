//! `runtime.v1.ImageService`: each RPC delegates to the file named after it.

use berth_proto::cri::image_service_server::ImageService;
use berth_proto::cri::*;
use tonic::{Request, Response, Status};

use super::{CriImageService, ResponseStream};

#[tonic::async_trait]
impl ImageService for CriImageService {
    type StreamImagesStream = ResponseStream<StreamImagesResponse>;

    async fn list_images(
        &self,
        request: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        self.list(request.into_inner()).await.map(Response::new)
    }

    async fn stream_images(
        &self,
        request: Request<StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        self.stream(request.into_inner()).await.map(Response::new)
    }

    async fn image_status(
        &self,
        request: Request<ImageStatusRequest>,
    ) -> Result<Response<ImageStatusResponse>, Status> {
        self.status(request.into_inner()).await.map(Response::new)
    }

    async fn pull_image(
        &self,
        request: Request<PullImageRequest>,
    ) -> Result<Response<PullImageResponse>, Status> {
        self.pull(request.into_inner()).await.map(Response::new)
    }

    async fn remove_image(
        &self,
        request: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        self.remove(request.into_inner()).await.map(Response::new)
    }

    async fn image_fs_info(
        &self,
        request: Request<ImageFsInfoRequest>,
    ) -> Result<Response<ImageFsInfoResponse>, Status> {
        self.fs_info(request.into_inner()).await.map(Response::new)
    }
}
