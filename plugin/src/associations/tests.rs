//! The associations end to end against the fake host and the fake
//! Salesforce: proposals, saves and their conflicts, stale users and
//! extensions, lookups, and repairing an unreadable record.

use std::sync::Arc;

use crate::associations::AssociationSet;
use crate::bindings::ErrorKind;
use crate::bindings::exports::pbx::crm::integration::{
    Association, AssociationState, UnmatchedReason,
};
use crate::plugin::Plugin;
use crate::store::{Store, keys};
use crate::testing::err as kind;
use crate::testing::user_list::*;
use crate::testing::{FakeHost, FakeSalesforce, sf_user, sf_user_id};

// --- proposals -----------------------------------------------------------------

#[test]
fn proposals_match_by_email_and_explain_the_rest() {
    let (host, sf) = connected(0);
    sf.set_users(vec![
        sf_user(0, "Ann", Some("Ann@Acme.org")),
        sf_user(1, "Bob", None),
        sf_user(2, "Cem", Some("desk@acme.org")),
        sf_user(3, "Dee", Some("  twin@acme.org")),
        sf_user(4, "Eve", Some("TWIN@acme.org")),
        sf_user(5, "Fay", Some("nobody@acme.org")),
        sf_user(6, "Zoë", Some("Zoë@Exämple.org ")),
    ]);
    directory(
        &host,
        &[
            ("1001", Some("ann@acme.ORG")),
            ("1002", Some("desk@acme.org")),
            ("1003", Some("Desk@Acme.org")),
            ("1004", Some("twin@acme.org")),
            ("1005", Some("zoë@exämple.org")),
            ("1006", None),
        ],
    );
    sync(&host);
    // An existing association does not keep anyone out of the proposal.
    assert_eq!(save(&host, 0, &[assoc(5, "1001")]).ok(), Some(1));

    let proposal = Plugin::new(&host).propose_associations();
    let Ok(proposal) = proposal else {
        panic!("{:?}", proposal.err());
    };
    assert_eq!(proposal.version, 1);
    let pairs: Vec<(String, String)> = proposal
        .matches
        .iter()
        .map(|m| (m.user_id.clone(), m.extension.clone()))
        .collect();
    assert_eq!(
        pairs,
        [
            (sf_user_id(0), "1001".to_string()),
            (sf_user_id(6), "1005".to_string())
        ]
    );
    let reason = |i: usize| {
        proposal
            .unmatched
            .iter()
            .find(|u| u.user_id == sf_user_id(i))
            .map(|u| u.reason.clone())
    };
    assert!(matches!(reason(1), Some(UnmatchedReason::NoEmail)));
    assert!(matches!(reason(2), Some(UnmatchedReason::SharedEmail(e)) if e == ["1002", "1003"]));
    assert!(matches!(reason(3), Some(UnmatchedReason::SharedUserEmail(u)) if u == [sf_user_id(4)]));
    assert!(matches!(reason(4), Some(UnmatchedReason::SharedUserEmail(u)) if u == [sf_user_id(3)]));
    assert!(matches!(reason(5), Some(UnmatchedReason::NoExtension)));
    // Nothing was stored.
    let set: Option<AssociationSet> = Store::new(&host).get(keys::ASSOCIATIONS).ok().flatten();
    assert_eq!(set.map(|s| s.version), Some(1));
}

#[test]
fn a_proposal_needs_synced_users() {
    let (host, _sf) = connected(3);
    let (k, message) = kind(Plugin::new(&host).propose_associations());
    assert_eq!(k, ErrorKind::InvalidInput);
    assert!(message.contains("sync the users first"), "{message}");
}

// --- saving ----------------------------------------------------------------------

fn three_users_three_extensions() -> (FakeHost, Arc<FakeSalesforce>) {
    let (host, sf) = connected(3);
    directory(
        &host,
        &[
            ("1001", Some("user0@acme.example.org")),
            ("1002", Some("user1@acme.example.org")),
            ("1003", Some("user2@acme.example.org")),
        ],
    );
    sync(&host);
    (host, sf)
}

#[test]
fn one_to_one_violations_name_both_sides() {
    let (host, _sf) = three_users_three_extensions();
    let (k, message) = kind(save(&host, 0, &[assoc(0, "1001"), assoc(1, "1001")]));
    assert_eq!(k, ErrorKind::InvalidInput);
    assert_eq!(
        message,
        "extension 1001 is given to both User 00000 (005000000000000AAA) and User 00001 (005000000000001AAA): one extension belongs to one Salesforce user"
    );
    let (k, message) = kind(save(&host, 0, &[assoc(2, "1002"), assoc(2, "1003")]));
    assert_eq!(k, ErrorKind::InvalidInput);
    assert_eq!(
        message,
        "User 00002 (005000000000002AAA) is given both extension 1002 and extension 1003: one Salesforce user has one extension"
    );
    let (k, message) = kind(save(&host, 0, &[assoc(0, " "), assoc(1, "1002")]));
    assert_eq!(k, ErrorKind::InvalidInput);
    assert!(message.contains("choose both"), "{message}");
    let (k, message) = kind(save(
        &host,
        0,
        &[Association {
            user_id: sf_user_id(999),
            extension: "1001".into(),
        }],
    ));
    assert_eq!(k, ErrorKind::InvalidInput);
    assert!(
        message.contains("sync the users, reload and re-assign"),
        "{message}"
    );
    // A malformed id, or an 18-character one with a wrong checksum.
    for bad in ["005NOTSYNCED", "005000000000001ABC"] {
        let (k, message) = kind(save(
            &host,
            0,
            &[Association {
                user_id: bad.into(),
                extension: "1001".into(),
            }],
        ));
        assert_eq!(k, ErrorKind::InvalidInput);
        assert!(message.contains("Salesforce user id"), "{message}");
    }
    // Nothing stored by any of them.
    assert!(host.kv_text(keys::ASSOCIATIONS).is_none());
    // The same pair twice is one pair.
    assert_eq!(
        save(&host, 0, &[assoc(0, "1001"), assoc(0, "1001")]).ok(),
        Some(1)
    );
    assert_eq!(
        Store::new(&host)
            .get::<AssociationSet>(keys::ASSOCIATIONS)
            .ok()
            .flatten()
            .map(|s| s.entries.len()),
        Some(1)
    );
}

#[test]
fn fifteen_character_ids_are_the_same_users() {
    let (host, _sf) = three_users_three_extensions();
    let short = |i: usize| sf_user_id(i)[..15].to_string();
    let typed = Association {
        user_id: format!(" {} ", short(1)),
        extension: "1002".into(),
    };
    // The 18-character form of one user and the 15-character of another.
    assert_eq!(save(&host, 0, &[assoc(0, "1001"), typed]).ok(), Some(1));
    let saved = Store::new(&host).get::<AssociationSet>(keys::ASSOCIATIONS);
    let ids: Vec<String> = saved
        .ok()
        .flatten()
        .map(|s| s.entries.into_iter().map(|e| e.user_id).collect())
        .unwrap_or_default();
    assert_eq!(ids, [sf_user_id(0), sf_user_id(1)], "stored as 18");
    let plugin = Plugin::new(&host);
    assert_eq!(
        plugin.extension_for_user(&short(1)).ok(),
        Some(Some("1002".into()))
    );
    // One user typed both ways is one user.
    let (k, message) = kind(save(
        &host,
        1,
        &[
            assoc(0, "1001"),
            Association {
                user_id: short(0),
                extension: "1003".into(),
            },
        ],
    ));
    assert_eq!(k, ErrorKind::InvalidInput);
    assert!(
        message.contains("one Salesforce user has one extension"),
        "{message}"
    );
    let (k, message) = kind(plugin.extension_for_user("005-bad"));
    assert_eq!(k, ErrorKind::InvalidInput);
    assert!(message.contains("15 or 18 letters and digits"), "{message}");
}

#[test]
fn an_extension_removed_between_proposal_and_save_is_refused() {
    let (host, _sf) = three_users_three_extensions();
    let proposal = Plugin::new(&host).propose_associations();
    let Ok(proposal) = proposal else {
        panic!("{:?}", proposal.err());
    };
    assert_eq!(proposal.matches.len(), 3);
    directory(
        &host,
        &[
            ("1001", Some("user0@acme.example.org")),
            ("1002", Some("user1@acme.example.org")),
        ],
    );
    let (k, message) = kind(save(&host, proposal.version, &proposal.matches));
    assert_eq!(k, ErrorKind::InvalidInput);
    assert!(
        message.starts_with("extension 1003 does not exist on the PBX: reload and re-assign"),
        "{message}"
    );
    assert!(host.kv_text(keys::ASSOCIATIONS).is_none());
}

#[test]
fn a_save_with_a_stale_version_is_a_conflict() {
    let (host, _sf) = three_users_three_extensions();
    // Two administrators load version 0; the first saves.
    assert_eq!(save(&host, 0, &[assoc(0, "1001")]).ok(), Some(1));
    let (k, message) = kind(save(&host, 0, &[assoc(1, "1001")]));
    assert_eq!(k, ErrorKind::Conflict);
    assert_eq!(
        message,
        "the associations were saved by someone else meanwhile (now version 1): reload, check, and save again"
    );
    // Saving the same set again with the right versions works.
    assert_eq!(save(&host, 1, &[assoc(0, "1001")]).ok(), Some(2));
    assert_eq!(save(&host, 2, &[assoc(0, "1001")]).ok(), Some(3));
}

#[test]
fn a_save_racing_another_between_read_and_write_is_refused() {
    let (host, _sf) = three_users_three_extensions();
    // Another instance commits version 1 right before our batch.
    host.before_next_batch(|kv| {
        kv.insert(
            keys::ASSOCIATIONS.into(),
            br#"{"version":1,"entries":[{"user_id":"005000000000002AAA","extension":"1003","user":{"name":"User 00002","username":"user2@acme.example.org"}}]}"#.to_vec(),
        );
    });
    let (k, message) = kind(save(&host, 0, &[assoc(0, "1003")]));
    assert_eq!(k, ErrorKind::Conflict, "{message}");
    assert!(message.contains("(now version 1)"), "{message}");
    // The other save stands.
    assert_eq!(
        Plugin::new(&host)
            .user_for_extension("1003")
            .ok()
            .flatten()
            .map(|u| u.id),
        Some(sf_user_id(2))
    );
}

#[test]
fn saved_associations_show_in_the_list_and_answer_lookups() {
    let (host, _sf) = three_users_three_extensions();
    let version = save(&host, 0, &[assoc(0, "1001"), assoc(2, "1003")]);
    assert_eq!(version.ok(), Some(1));
    let list = Plugin::new(&host).list_users();
    let Ok(list) = list else {
        panic!("{:?}", list.err());
    };
    assert_eq!(list.version, 1);
    let states: Vec<(String, Option<String>, AssociationState)> = list
        .entries
        .iter()
        .map(|e| (e.user.name.clone(), e.extension.clone(), e.state))
        .collect();
    assert_eq!(
        states,
        [
            (
                "User 00000".into(),
                Some("1001".into()),
                AssociationState::Associated
            ),
            ("User 00001".into(), None, AssociationState::Unassociated),
            (
                "User 00002".into(),
                Some("1003".into()),
                AssociationState::Associated
            ),
        ]
    );
    let plugin = Plugin::new(&host);
    let user = plugin.user_for_extension("1003").ok().flatten();
    assert_eq!(user.as_ref().map(|u| u.id.clone()), Some(sf_user_id(2)));
    assert_eq!(user.as_ref().map(|u| u.name.as_str()), Some("User 00002"));
    assert_eq!(
        user.and_then(|u| u.email),
        Some("user2@acme.example.org".into())
    );
    assert!(plugin.user_for_extension("1002").is_ok_and(|u| u.is_none()));
    assert!(plugin.user_for_extension("9999").is_ok_and(|u| u.is_none()));
    assert_eq!(
        plugin.extension_for_user(&sf_user_id(0)).ok(),
        Some(Some("1001".into()))
    );
    assert_eq!(plugin.extension_for_user(&sf_user_id(1)).ok(), Some(None));
    // What cannot be a Salesforce id is refused, naming the fix.
    for bad in ["not,an:id", ""] {
        let (k, message) = kind(plugin.extension_for_user(bad));
        assert_eq!(k, ErrorKind::InvalidInput, "{bad}");
        assert!(message.contains("15 or 18 letters and digits"), "{message}");
    }
}

#[test]
fn an_extension_dropped_from_the_directory_turns_stale() {
    let (host, _sf) = three_users_three_extensions();
    assert_eq!(
        save(&host, 0, &[assoc(0, "1001"), assoc(1, "1002")]).ok(),
        Some(1)
    );
    directory(&host, &[("1001", None), ("1003", None)]);
    let e = entry(&host, &sf_user_id(1));
    assert_eq!(
        e.map(|e| (e.extension, e.state)),
        Some((Some("1002".into()), AssociationState::StaleExtension))
    );
    let plugin = Plugin::new(&host);
    assert!(plugin.user_for_extension("1002").is_ok_and(|u| u.is_none()));
    assert_eq!(plugin.extension_for_user(&sf_user_id(1)).ok(), Some(None));
    assert!(plugin.user_for_extension("1001").is_ok_and(|u| u.is_some()));
    // Re-assigning the user to an existing extension clears it.
    assert_eq!(
        save(&host, 1, &[assoc(0, "1001"), assoc(1, "1003")]).ok(),
        Some(2)
    );
    assert_eq!(
        entry(&host, &sf_user_id(1)).map(|e| e.state),
        Some(AssociationState::Associated)
    );
}

#[test]
fn unreadable_associations_say_how_to_repair_and_a_save_replaces_them() {
    let (host, _sf) = three_users_three_extensions();
    host.kv_put(keys::ASSOCIATIONS, "{not json");
    let (k, message) = kind(Plugin::new(&host).list_users());
    assert_eq!(k, ErrorKind::Internal);
    assert!(
        message.ends_with("save the associations again to replace it"),
        "{message}"
    );
    assert_eq!(save(&host, 7, &[assoc(0, "1001")]).ok(), Some(8));
    assert_eq!(
        entry(&host, &sf_user_id(0)).map(|e| e.state),
        Some(AssociationState::Associated)
    );
}
