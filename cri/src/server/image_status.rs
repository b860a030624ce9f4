//! ImageStatus: one image, with its config and chain ID as verbose info.

use std::collections::HashMap;

use berth_proto::cri::{Image, ImageSpec, ImageStatusRequest, ImageStatusResponse, Int64Value};
use tonic::Status;

use super::CriImageService;
use crate::image::chain_id;
use crate::store::ImageRecord;

impl CriImageService {
    /// Returns the image, or no image (not an error) when it is unknown, as the CRI specifies.
    pub(super) async fn status(
        &self,
        request: ImageStatusRequest,
    ) -> Result<ImageStatusResponse, Status> {
        let name = request.image.map(|spec| spec.image).unwrap_or_default();
        if name.trim().is_empty() {
            return Err(Status::invalid_argument(
                "ImageStatus needs image.image: an image reference or ID",
            ));
        }
        let images = self.0.images.clone();
        let verbose = request.verbose;
        tokio::task::spawn_blocking(move || {
            let Some(record) = images.find(&name)? else {
                return Ok(ImageStatusResponse::default());
            };
            let mut info = HashMap::new();
            if verbose {
                let details = serde_json::json!({
                    "imageSpec": images.config_json(&record)?,
                    "chainID": chain_id(record.diff_ids()),
                    "manifestDigest": record.manifest_digest,
                    "layers": record.layers,
                    "pulledAtNs": record.pulled_at_ns,
                    "lastUsedNs": record.last_used_ns,
                });
                info.insert("info".to_string(), details.to_string());
            }
            Ok(ImageStatusResponse {
                image: Some(to_cri_image(&record)),
                info,
            })
        })
        .await
        .map_err(|err| Status::internal(format!("image status task failed: {err}")))?
        .map_err(|err: crate::image::ImageError| err.into())
    }
}

/// Converts an image record to the CRI's `Image`, with `uid` or `username` from the image's USER
/// as the kubelet expects: a numeric user sets `uid`, a name sets `username`, and an empty
/// USER sets neither.
pub(super) fn to_cri_image(record: &ImageRecord) -> Image {
    let user = record.user.split(':').next().unwrap_or_default();
    let (uid, username) = match user.parse::<i64>() {
        Ok(uid) => (Some(Int64Value { value: uid }), String::new()),
        Err(_) => (None, user.to_string()),
    };
    Image {
        id: record.id.clone(),
        repo_tags: record.repo_tags.clone(),
        repo_digests: record.repo_digests.clone(),
        size: record.size,
        uid,
        username,
        spec: Some(ImageSpec {
            image: record.id.clone(),
            ..ImageSpec::default()
        }),
        pinned: record.pinned,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_user(user: &str) -> Image {
        to_cri_image(&ImageRecord {
            user: user.to_string(),
            ..ImageRecord::default()
        })
    }

    #[test]
    fn numeric_user_sets_uid() {
        let image = with_user("1000:1000");
        assert_eq!(image.uid, Some(Int64Value { value: 1000 }));
        assert_eq!(image.username, "");
    }

    #[test]
    fn named_user_sets_username() {
        let image = with_user("app");
        assert_eq!(image.uid, None);
        assert_eq!(image.username, "app");
    }

    #[test]
    fn empty_user_sets_neither() {
        let image = with_user("");
        assert_eq!(image.uid, None);
        assert_eq!(image.username, "");
    }
}
