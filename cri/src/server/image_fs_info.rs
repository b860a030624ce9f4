//! ImageFsInfo.

use berth_proto::cri::{
    FilesystemIdentifier, FilesystemUsage, ImageFsInfoRequest, ImageFsInfoResponse, UInt64Value,
};
use tonic::Status;

use super::CriImageService;
use crate::image::{FsUsage, now_ns};

impl CriImageService {
    /// Reports the image filesystem (blobs and layers) and the container filesystem (writable
    /// layers) with bytes and inodes used.
    pub(super) async fn fs_info(
        &self,
        _request: ImageFsInfoRequest,
    ) -> Result<ImageFsInfoResponse, Status> {
        let images = self.0.images.clone();
        let (image, container) = tokio::task::spawn_blocking(move || images.fs_usage())
            .await
            .map_err(|err| Status::internal(format!("filesystem usage task failed: {err}")))??;
        let timestamp = now_ns() as i64;
        Ok(ImageFsInfoResponse {
            image_filesystems: vec![to_cri_usage(image, timestamp)],
            container_filesystems: vec![to_cri_usage(container, timestamp)],
        })
    }
}

fn to_cri_usage(usage: FsUsage, timestamp: i64) -> FilesystemUsage {
    FilesystemUsage {
        timestamp,
        fs_id: Some(FilesystemIdentifier {
            mountpoint: usage.mountpoint.display().to_string(),
        }),
        used_bytes: Some(UInt64Value {
            value: usage.used_bytes,
        }),
        inodes_used: Some(UInt64Value {
            value: usage.inodes_used,
        }),
    }
}
