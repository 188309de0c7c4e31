//! `--user` and `--group` as settings: the ids the workers run as.
//!
//! The names are resolved once, when the settings are read in the master
//! (an unknown name is a config error naming the flag). The switch itself
//! is the worker's (`worker::identity`); this is only the value.

use nix::unistd::{Gid, Group, Uid, User};

/// `--user`: the uid the workers run as, and the account name when known
/// (`--initgroups` needs it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserId {
    /// The numeric user id.
    pub uid: u32,
    /// The account name: as given, or looked up for a numeric id.
    pub name: Option<String>,
}

/// `--group`: the gid the workers run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupId {
    /// The numeric group id.
    pub gid: u32,
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
