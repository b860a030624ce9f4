//! Protobuf messages and tonic client and server code for the Kubernetes
//! Container Runtime Interface (CRI) v1 services `runtime.v1.RuntimeService`
//! and `runtime.v1.ImageService`, generated at build time from `cri/api.proto`.
//!
//! Servers implement [`cri::runtime_service_server::RuntimeService`] and
//! [`cri::image_service_server::ImageService`]. Clients use
//! [`cri::runtime_service_client::RuntimeServiceClient`] and
//! [`cri::image_service_client::ImageServiceClient`].

use std::fmt;

/// Code generated from the protobuf package `runtime`.
pub mod runtime {
    /// Code generated from the protobuf package `runtime.v1`.
    pub mod v1 {
        // Generated code is not edited by hand, so lint findings in it cannot
        // be fixed here.
        #![allow(clippy::all, clippy::pedantic)]

        tonic::include_proto!("runtime.v1");
    }
}

pub use runtime::v1 as cri;

/// Encoded `google.protobuf.FileDescriptorSet` of `cri/api.proto`, for gRPC
/// server reflection or decoding CRI messages without the generated types.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cri_descriptor.bin"));

/// Prints `password`, `auth`, `identity_token` and `registry_token` as
/// `<redacted>` when set, matching their `debug_redact` option in the schema,
/// so logging a `PullImageRequest` does not leak registry credentials.
impl fmt::Debug for cri::AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("password", &Redacted(&self.password))
            .field("auth", &Redacted(&self.auth))
            .field("server_address", &self.server_address)
            .field("identity_token", &Redacted(&self.identity_token))
            .field("registry_token", &Redacted(&self.registry_token))
            .finish()
    }
}

/// A secret string in `Debug` output, printed as `""` when empty and as
/// `<redacted>` otherwise.
struct Redacted<'a>(&'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("<redacted>")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use prost::Message;

    use super::*;

    #[test]
    fn auth_config_debug_hides_secrets() {
        let auth = cri::AuthConfig {
            username: "robot".into(),
            password: "hunter2".into(),
            auth: "cm9ib3Q6aHVudGVyMg==".into(),
            server_address: "registry.example".into(),
            identity_token: "id-token".into(),
            registry_token: String::new(),
        };

        let output = format!("{auth:?}");

        assert!(output.contains("username: \"robot\""), "{output}");
        assert!(
            output.contains("server_address: \"registry.example\""),
            "{output}"
        );
        assert!(output.contains("password: <redacted>"), "{output}");
        assert!(output.contains("auth: <redacted>"), "{output}");
        assert!(output.contains("identity_token: <redacted>"), "{output}");
        assert!(output.contains("registry_token: \"\""), "{output}");
        for secret in ["hunter2", "cm9ib3Q6aHVudGVyMg==", "id-token"] {
            assert!(!output.contains(secret), "{secret} leaked: {output}");
        }
    }

    #[test]
    fn pull_image_request_round_trip() {
        let request = cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: "docker.io/library/busybox:1.36".into(),
                annotations: HashMap::from([("a".to_string(), "b".to_string())]),
                ..Default::default()
            }),
            auth: Some(cri::AuthConfig {
                username: "robot".into(),
                password: "hunter2".into(),
                ..Default::default()
            }),
            sandbox_config: None,
        };

        let decoded = cri::PullImageRequest::decode(request.encode_to_vec().as_slice()).unwrap();

        assert_eq!(decoded, request);
    }

    #[test]
    fn descriptor_set_lists_services() {
        let set = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
        let file = set
            .file
            .iter()
            .find(|file| file.package() == "runtime.v1")
            .expect("descriptor set is missing the runtime.v1 file");

        let methods: HashMap<&str, Vec<&str>> = file
            .service
            .iter()
            .map(|service| {
                let names = service.method.iter().map(|method| method.name()).collect();
                (service.name(), names)
            })
            .collect();

        assert_eq!(methods.len(), 2, "{methods:?}");
        assert_eq!(methods["RuntimeService"].len(), 35);
        assert_eq!(methods["ImageService"].len(), 6);
        assert!(methods["ImageService"].contains(&"StreamImages"));
        assert!(methods["RuntimeService"].contains(&"StreamPodSandboxMetrics"));
    }
}
