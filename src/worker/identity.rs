//! `--user`, `--group` and `--initgroups`: who the workers run as.
//!
//! The names are resolved once, when the settings are read in the master
//! (an unknown name is a config error naming the flag). The master keeps
//! the identity it was started with (so it can re-bind, signal and write
//! its pid file); each worker switches right after the fork, before the
//! interpreter starts: supplementary groups, then the group, then the user,
//! in that order because each step needs the privileges the next one drops.

use nix::unistd::{getegid, getgid, getuid, Gid, Group, Uid, User};
use std::ffi::CString;

/// `--user`: the uid the workers run as, and the account name when known
/// (`--initgroups` needs it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserId {
    /// The numeric user id.
    pub uid: u32,
    /// The account name: as given, or looked up for a numeric id.
    pub name: Option<String>,
}

/// `--group`: the gid the workers run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupId {
    /// The numeric group id.
    pub gid: u32,
}

/// Why a worker could not take its identity. One line each.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// `initgroups(3)` or `setgroups(2)` failed.
    #[error("cannot set the supplementary groups for gid {gid}: {errno}")]
    Groups { gid: u32, errno: nix::Error },
    /// `setgid(2)` failed.
    #[error("cannot switch to group {gid}: {errno}")]
    SetGid { gid: u32, errno: nix::Error },
    /// `setuid(2)` failed.
    #[error("cannot switch to user {uid}: {errno}")]
    SetUid { uid: u32, errno: nix::Error },
}

/// `--user`: a numeric uid (taken as is, as gunicorn does) or an account
/// name, resolved now.
pub fn parse_user(text: &str) -> Result<UserId, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let uid: u32 = text.parse().map_err(|_| format!("'{text}' is not a uid"))?;
        let name = User::from_uid(Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|user| user.name);
        return Ok(UserId { uid, name });
    }
    match User::from_name(text) {
        Ok(Some(user)) => Ok(UserId {
            uid: user.uid.as_raw(),
            name: Some(user.name),
        }),
        Ok(None) => Err(format!("no such user: '{text}'")),
        Err(errno) => Err(format!("cannot look up user '{text}': {errno}")),
    }
}

/// `--group`: a numeric gid (taken as is) or a group name, resolved now.
pub fn parse_group(text: &str) -> Result<GroupId, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let gid: u32 = text.parse().map_err(|_| format!("'{text}' is not a gid"))?;
        return Ok(GroupId { gid });
    }
    match Group::from_name(text) {
        Ok(Some(group)) => Ok(GroupId {
            gid: group.gid.as_raw(),
        }),
        Ok(None) => Err(format!("no such group: '{text}'")),
        Err(errno) => Err(format!("cannot look up group '{text}': {errno}")),
    }
}

/// The ids the workers run as, when `--user` or `--group` is set: the
/// group defaults to the master's effective group (as gunicorn's does).
pub fn worker_owner(
    user: Option<&UserId>,
    group: Option<GroupId>,
) -> Option<(Option<Uid>, Option<Gid>)> {
    if user.is_none() && group.is_none() {
        return None;
    }
    Some((
        user.map(|u| Uid::from_raw(u.uid)),
        group.map(|g| Gid::from_raw(g.gid)),
    ))
}

/// In a freshly forked worker: takes the `--user`/`--group` identity.
/// Supplementary groups first: with `--initgroups` those of the user's
/// account (as `initgroups(3)`; the running user's without `--user`), else, when running as root, just the
/// target group (so root's own supplementary groups are not kept); then
/// `setgid`, then `setuid`. Nothing happens when neither flag is set.
pub fn switch_to(
    user: Option<&UserId>,
    group: Option<GroupId>,
    initgroups: bool,
) -> Result<(), IdentityError> {
    if user.is_none() && group.is_none() {
        return Ok(());
    }
    let gid = group.map_or_else(getegid, |g| Gid::from_raw(g.gid));
    let account = match user {
        _ if !initgroups => None,
        Some(user) => user.name.clone(),
        // gunicorn's user defaults to the one running: its account.
        None => User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|u| u.name),
    };
    set_supplementary_groups(account.as_deref(), gid)?;
    if gid != getgid() {
        nix::unistd::setgid(gid).map_err(|errno| IdentityError::SetGid {
            gid: gid.as_raw(),
            errno,
        })?;
    }
    if let Some(user) = user {
        let uid = Uid::from_raw(user.uid);
        if uid != getuid() {
            nix::unistd::setuid(uid).map_err(|errno| IdentityError::SetUid {
                uid: user.uid,
                errno,
            })?;
        }
    }
    log::debug!(
        "Worker running as uid {} gid {}",
        getuid().as_raw(),
        getgid().as_raw()
    );
    Ok(())
}

/// `initgroups(account, gid)` when an account is given; else `[gid]` when
/// we may change groups (root), else nothing.
fn set_supplementary_groups(account: Option<&str>, gid: Gid) -> Result<(), IdentityError> {
    let groups_error = |errno| IdentityError::Groups {
        gid: gid.as_raw(),
        errno,
    };
    match account {
        Some(name) => {
            let name = CString::new(name).map_err(|_| groups_error(nix::Error::EINVAL))?;
            nix::unistd::initgroups(&name, gid).map_err(groups_error)
        }
        None if nix::unistd::geteuid().is_root() => {
            nix::unistd::setgroups(&[gid]).map_err(groups_error)
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_ids_are_taken_as_given() {
        assert_eq!(parse_user("4242").map(|u| u.uid), Ok(4242));
        assert_eq!(parse_group("4343"), Ok(GroupId { gid: 4343 }));
    }

    #[test]
    fn names_resolve_through_the_account_database() {
        let root = parse_user("root").unwrap();
        assert_eq!(root.uid, 0);
        assert_eq!(root.name.as_deref(), Some("root"));
        assert_eq!(parse_user("0").unwrap().name.as_deref(), Some("root"));
        assert_eq!(parse_group("root"), Ok(GroupId { gid: 0 }));
    }

    #[test]
    fn unknown_names_are_errors() {
        assert_eq!(
            parse_user("no-such-user-rg").unwrap_err(),
            "no such user: 'no-such-user-rg'"
        );
        assert_eq!(
            parse_group("no-such-group-rg").unwrap_err(),
            "no such group: 'no-such-group-rg'"
        );
    }

    #[test]
    fn no_flags_means_no_owner() {
        assert_eq!(worker_owner(None, None), None);
        let owner = worker_owner(None, Some(GroupId { gid: 7 }));
        assert_eq!(owner, Some((None, Some(Gid::from_raw(7)))));
    }
}
