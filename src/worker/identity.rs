//! `--user`, `--group` and `--initgroups`: the worker takes its identity.
//!
//! The ids are settings ([`crate::config::UserId`], [`crate::config::GroupId`],
//! resolved when the settings are read). The master keeps
//! the identity it was started with (so it can re-bind, signal and write
//! its pid file); each worker switches right after the fork, before the
//! interpreter starts: supplementary groups, then the group, then the user,
//! in that order because each step needs the privileges the next one drops.

use crate::config::{GroupId, UserId};
use nix::unistd::{getegid, getgid, getuid, Gid, Uid, User};
use std::ffi::CString;

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
