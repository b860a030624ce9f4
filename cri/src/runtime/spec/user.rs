//! The container process's user: uid, gid and supplementary groups, resolved against the
//! rootfs's `/etc/passwd` and `/etc/group` the way containerd's CRI plugin does.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use berth_proto::cri::{LinuxContainerSecurityContext, SupplementalGroupsPolicy};
use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use oci_spec::runtime::{User, UserBuilder};

use super::SpecError;

/// runc rejects ids above `i32::MAX`, although the kernel allows up to `u32::MAX - 1`.
const MAX_ID: u32 = i32::MAX as u32;

const PASSWD: &str = "etc/passwd";
const GROUP: &str = "etc/group";

/// Builds `process.user` from the CRI security context and the image's `USER`.
///
/// The user string comes from `run_as_username`, else `run_as_user` (plus `:run_as_group` when
/// set), else the image's `USER`, else root. A numeric uid missing from `/etc/passwd` runs with
/// gid 0, as in Docker; a user or group name that is missing is an error. The primary gid is
/// always the first of `additionalGids`.
pub(super) fn process_user(
    rootfs: &Path,
    security: Option<&LinuxContainerSecurityContext>,
    image_user: &str,
) -> Result<User, SpecError> {
    let request = requested_user(security, image_user)?;
    let files = UserFiles::read(rootfs)?;
    let (uid, gid) = resolve_user(&request, &files)?;

    let policy = security.map_or(Ok(SupplementalGroupsPolicy::Merge), |s| {
        SupplementalGroupsPolicy::try_from(s.supplemental_groups_policy).map_err(|_| {
            SpecError::UnknownEnumValue {
                field: "supplemental_groups_policy",
                value: s.supplemental_groups_policy,
            }
        })
    })?;

    let mut additional_gids = vec![gid];
    if policy == SupplementalGroupsPolicy::Merge {
        // Strict takes only the CRI's groups; Merge adds the image's own memberships.
        push_unique(&mut additional_gids, member_groups(&request, &files));
    }
    let requested_groups = security.map_or(&[][..], |s| &s.supplemental_groups[..]);
    push_unique(&mut additional_gids, cri_groups(requested_groups)?);

    Ok(UserBuilder::default()
        .uid(uid)
        .gid(gid)
        .additional_gids(additional_gids)
        .build()?)
}

/// The user string to resolve and the field it came from, for error messages.
struct UserRequest {
    user: String,
    field: &'static str,
    /// The part before `:`, whose group memberships become supplementary groups.
    user_part: String,
}

fn requested_user(
    security: Option<&LinuxContainerSecurityContext>,
    image_user: &str,
) -> Result<UserRequest, SpecError> {
    let username = security.map_or("", |s| s.run_as_username.as_str());
    let uid = security.and_then(|s| s.run_as_user).map(|v| v.value);
    let gid = security.and_then(|s| s.run_as_group).map(|v| v.value);

    let (user_part, field) = if !username.is_empty() {
        (username.to_string(), "run_as_username")
    } else if let Some(uid) = uid {
        let uid = checked_id("run_as_user", uid)?;
        (uid.to_string(), "run_as_user")
    } else if let Some(gid) = gid {
        return Err(SpecError::GroupWithoutUser { gid });
    } else if !image_user.is_empty() {
        let user_part = image_user.split(':').next().unwrap_or_default();
        return Ok(UserRequest {
            user: image_user.to_string(),
            field: "image config User",
            user_part: user_part.to_string(),
        });
    } else {
        ("0".to_string(), "default user")
    };

    let user = match gid {
        Some(gid) => format!("{user_part}:{}", checked_id("run_as_group", gid)?),
        None => user_part.clone(),
    };
    Ok(UserRequest {
        user,
        field,
        user_part,
    })
}

fn checked_id(field: &'static str, value: i64) -> Result<u32, SpecError> {
    u32::try_from(value)
        .ok()
        .filter(|id| *id <= MAX_ID)
        .ok_or_else(|| SpecError::InvalidUser {
            field,
            value: value.to_string(),
            reason: format!("must be between 0 and {MAX_ID}"),
        })
}

/// One side of a `user:group` string.
enum IdOrName<'a> {
    Id(u32),
    Name(&'a str),
}

fn parse_part<'a>(request: &UserRequest, part: &'a str) -> Result<IdOrName<'a>, SpecError> {
    let invalid = |reason: String| SpecError::InvalidUser {
        field: request.field,
        value: request.user.clone(),
        reason,
    };
    if part.is_empty() {
        return Err(invalid("empty user or group".to_string()));
    }
    if !part.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(IdOrName::Name(part));
    }
    match part.parse::<u32>() {
        Ok(id) if id <= MAX_ID => Ok(IdOrName::Id(id)),
        _ => Err(invalid(format!("id {part} is above {MAX_ID}"))),
    }
}

fn resolve_user(request: &UserRequest, files: &UserFiles) -> Result<(u32, u32), SpecError> {
    let parts: Vec<&str> = request.user.split(':').collect();
    match parts[..] {
        [user] => match parse_part(request, user)? {
            IdOrName::Id(uid) => {
                let gid = files.user_by_id(uid).map_or(0, |entry| entry.gid);
                Ok((uid, gid))
            }
            IdOrName::Name(name) => {
                let entry = files.user_by_name(name)?;
                Ok((entry.uid, entry.gid))
            }
        },
        [user, group] => {
            let uid = match parse_part(request, user)? {
                IdOrName::Id(uid) => uid,
                IdOrName::Name(name) => files.user_by_name(name)?.uid,
            };
            let gid = match parse_part(request, group)? {
                IdOrName::Id(gid) => gid,
                IdOrName::Name(name) => files.group_by_name(name)?.gid,
            };
            Ok((uid, gid))
        }
        _ => Err(SpecError::InvalidUser {
            field: request.field,
            value: request.user.clone(),
            reason: "expected name, uid, name:group or uid:gid".to_string(),
        }),
    }
}

/// Gids of the `/etc/group` entries that list the requested user as a member.
fn member_groups(request: &UserRequest, files: &UserFiles) -> Vec<u32> {
    let name = if request.user_part.bytes().all(|b| b.is_ascii_digit()) {
        let uid = request.user_part.parse::<u32>().ok();
        match uid.and_then(|uid| files.user_by_id(uid)) {
            Some(entry) => entry.name.clone(),
            None => return Vec::new(),
        }
    } else {
        request.user_part.clone()
    };
    files
        .groups
        .iter()
        .filter(|group| group.members.contains(&name))
        .map(|group| group.gid)
        .collect()
}

fn cri_groups(groups: &[i64]) -> Result<Vec<u32>, SpecError> {
    groups
        .iter()
        .map(|gid| checked_id("supplemental_groups", *gid))
        .collect()
}

fn push_unique(gids: &mut Vec<u32>, more: Vec<u32>) {
    for gid in more {
        if !gids.contains(&gid) {
            gids.push(gid);
        }
    }
}

#[derive(Debug)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

#[derive(Debug)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// `/etc/passwd` and `/etc/group` of one rootfs. A missing file reads as `None`.
struct UserFiles {
    rootfs: PathBuf,
    passwd: Option<Vec<PasswdEntry>>,
    groups: Vec<GroupEntry>,
}

impl UserFiles {
    fn read(rootfs: &Path) -> Result<UserFiles, SpecError> {
        let passwd = read_in_rootfs(rootfs, PASSWD)?.map(|text| parse_passwd(&text));
        let groups = read_in_rootfs(rootfs, GROUP)?
            .map(|text| parse_group(&text))
            .unwrap_or_default();
        Ok(UserFiles {
            rootfs: rootfs.to_path_buf(),
            passwd,
            groups,
        })
    }

    fn user_by_id(&self, uid: u32) -> Option<&PasswdEntry> {
        self.passwd.as_ref()?.iter().find(|entry| entry.uid == uid)
    }

    fn user_by_name(&self, name: &str) -> Result<&PasswdEntry, SpecError> {
        self.passwd
            .iter()
            .flatten()
            .find(|entry| entry.name == name)
            .ok_or_else(|| SpecError::UserNotFound {
                user: name.to_string(),
                file: self.rootfs.join(PASSWD),
            })
    }

    fn group_by_name(&self, name: &str) -> Result<&GroupEntry, SpecError> {
        self.groups
            .iter()
            .find(|group| group.name == name)
            .ok_or_else(|| SpecError::GroupNotFound {
                group: name.to_string(),
                file: self.rootfs.join(GROUP),
            })
    }
}

/// Reads `relative` inside `rootfs`, resolving symbolic links as if `rootfs` were `/`, so an
/// image cannot point `/etc/passwd` at a file of the host. Returns `None` when it does not exist.
fn read_in_rootfs(rootfs: &Path, relative: &str) -> Result<Option<String>, SpecError> {
    let path = rootfs.join(relative);
    let root = File::open(rootfs).map_err(|e| SpecError::io("failed to open rootfs", rootfs, e))?;
    let open_how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = match openat2(&root, relative, open_how) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(errno) => {
            return Err(SpecError::io(
                "failed to open",
                path,
                io::Error::from(errno),
            ));
        }
    };

    let mut bytes = Vec::new();
    File::from(fd)
        .read_to_end(&mut bytes)
        .map_err(|e| SpecError::io("failed to read", &path, e))?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

// Lines that do not parse are skipped, as glibc and Go's os/user do.
fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields[..] {
                [name, _, uid, gid, ..] if !name.is_empty() && !name.starts_with('#') => {
                    Some(PasswdEntry {
                        name: name.to_string(),
                        uid: uid.parse().ok()?,
                        gid: gid.parse().ok()?,
                    })
                }
                _ => None,
            }
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields[..] {
                [name, _, gid, ref rest @ ..] if !name.is_empty() && !name.starts_with('#') => {
                    let members = rest.first().copied().unwrap_or_default();
                    Some(GroupEntry {
                        name: name.to_string(),
                        gid: gid.parse().ok()?,
                        members: members
                            .split(',')
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .map(str::to_string)
                            .collect(),
                    })
                }
                _ => None,
            }
        })
        .collect()
}
