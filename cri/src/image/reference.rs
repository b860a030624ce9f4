//! Image references, normalized as Docker does: `busybox` is `docker.io/library/busybox:latest`.

use oci_client::Reference;

use super::ImageError;

/// Parses and normalizes an image reference, rejecting malformed ones.
pub fn parse(reference: &str) -> Result<Reference, ImageError> {
    let trimmed = reference.trim();
    if trimmed.is_empty() {
        return Err(ImageError::InvalidReference {
            reference: reference.to_string(),
            reason: "the reference is empty".to_string(),
        });
    }
    let invalid = |reason: String| ImageError::InvalidReference {
        reference: reference.to_string(),
        reason,
    };
    let parsed = Reference::try_from(trimmed).map_err(|err| invalid(err.to_string()))?;
    // The parser accepts uppercase in a first component that it then treats as part of the
    // repository path; Docker rejects such names, and so do we.
    if parsed.repository().bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(invalid("repository name must be lowercase".to_string()));
    }
    // Docker reserves 64-hex names for image IDs, so `crictl inspecti <id>` is never a name.
    if trimmed.len() == 64 && is_id_like(trimmed) {
        return Err(invalid(
            "a 64-character hex string is an image ID, not a repository name".to_string(),
        ));
    }
    Ok(parsed)
}

/// Returns `registry/repository`, the name shared by an image's tags and digests.
pub fn repository_name(reference: &Reference) -> String {
    format!("{}/{}", reference.registry(), reference.repository())
}

/// Returns the normalized `registry/repository:tag` name, or `None` for a reference that pins
/// a digest: a digest pull does not move a tag.
pub fn tag_name(reference: &Reference) -> Option<String> {
    if reference.digest().is_some() {
        return None;
    }
    reference
        .tag()
        .map(|tag| format!("{}:{tag}", repository_name(reference)))
}

/// Returns the normalized `registry/repository@digest` name.
pub fn digest_name(reference: &Reference, digest: &str) -> String {
    format!("{}@{digest}", repository_name(reference))
}

/// Returns true when `value` looks like an image ID or a prefix of one (`sha256:` optional,
/// lowercase hex), as `crictl` passes IDs.
pub fn is_id_like(value: &str) -> bool {
    let hex = value.strip_prefix("sha256:").unwrap_or(value);
    !hex.is_empty()
        && hex.len() <= 64
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_name_normalizes_to_docker_hub() {
        let reference = parse("busybox").unwrap();
        assert_eq!(
            tag_name(&reference).unwrap(),
            "docker.io/library/busybox:latest"
        );
    }

    #[test]
    fn user_repository_keeps_its_namespace() {
        let reference = parse("example/app:1.2").unwrap();
        assert_eq!(tag_name(&reference).unwrap(), "docker.io/example/app:1.2");
    }

    #[test]
    fn registry_with_port_is_kept() {
        let reference = parse("127.0.0.1:5000/berth-test/busybox").unwrap();
        assert_eq!(reference.registry(), "127.0.0.1:5000");
        assert_eq!(
            tag_name(&reference).unwrap(),
            "127.0.0.1:5000/berth-test/busybox:latest"
        );
    }

    #[test]
    fn digest_reference_has_no_tag_name() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let reference = parse(&format!("busybox@{digest}")).unwrap();
        assert_eq!(tag_name(&reference), None);
        assert_eq!(
            digest_name(&reference, &digest),
            format!("docker.io/library/busybox@{digest}")
        );
    }

    #[test]
    fn malformed_references_are_rejected() {
        let id = "a".repeat(64);
        for bad in [
            "",
            "  ",
            "UPPER/case",
            "busybox:bad tag",
            "a@sha256:zz",
            "-leading",
            id.as_str(),
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn id_like_values() {
        assert!(is_id_like("sha256:0123abcd"));
        assert!(is_id_like("0123abcd"));
        assert!(!is_id_like("busybox"));
        assert!(!is_id_like(""));
    }
}
