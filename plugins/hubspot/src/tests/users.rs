use crate::bindings::exports::pbx::crm::integration::{
    Association, AssociationState, UnmatchedReason,
};
use crate::error::PluginError;
use crate::plugin::Plugin;
use crate::testing::*;

fn assoc(user: &str, ext: &str) -> Association {
    Association {
        user_id: user.into(),
        extension: ext.into(),
    }
}

/// A sync run to its end; the steps taken.
fn sync_all(plugin: &Plugin<&FakeHost>) -> u32 {
    let mut cursor = None;
    let mut steps = 0;
    loop {
        steps += 1;
        let step = plugin.sync_users(cursor.as_deref());
        let Ok(progress) = step else {
            panic!("sync failed: {step:?}");
        };
        cursor = progress.cursor;
        if cursor.is_none() {
            return steps;
        }
    }
}

#[test]
fn owners_are_synced_page_by_page_in_steps() {
    let (host, hs) = connected();
    for i in 0..1201 {
        hs.add_owner(
            &i.to_string(),
            &format!("u{i}@acme.test"),
            &format!("U{i}"),
            10_000 + i,
        );
    }
    let plugin = Plugin::new(host);
    // 13 pages of 100 at 5 pages a step.
    assert_eq!(sync_all(&plugin), 3);
    let owner_pages = host
        .requests()
        .iter()
        .filter(|r| r.url.contains("/crm/v3/owners?"))
        .map(|r| r.url.clone())
        .collect::<Vec<_>>();
    assert_eq!(owner_pages.len(), 13);
    assert!(owner_pages[1].contains("after=100"));
    let list = plugin.list_users().map(|l| l.entries.len());
    assert_eq!(list.ok(), Some(1201));
}

#[test]
fn a_stale_cursor_is_refused() {
    let (host, hs) = connected();
    for i in 0..600 {
        hs.add_owner(&i.to_string(), &format!("u{i}@acme.test"), "U", i);
    }
    let plugin = Plugin::new(host);
    let first = plugin.sync_users(None).ok().and_then(|p| p.cursor);
    assert!(first.is_some());
    let _newer = plugin.sync_users(None);
    let err = plugin.sync_users(first.as_deref());
    assert!(matches!(err, Err(PluginError::InvalidInput(_))));
}

#[test]
fn associations_are_proposed_by_email_and_saved_with_a_version() {
    let (host, hs) = connected();
    hs.add_owner("1", "Ann@Acme.test", "Ann", 1);
    hs.add_owner("2", "bob@acme.test", "Bob", 2);
    hs.add_owner("3", "", "NoMail", 3);
    host.set_extensions(vec![
        extension("1001", Some("ann@acme.test")),
        extension("1002", Some("carl@acme.test")),
    ]);
    let plugin = Plugin::new(host);
    sync_all(&plugin);
    let proposal = plugin.propose_associations().map_err(|e| e.to_string());
    let Ok(proposal) = proposal else {
        panic!("{proposal:?}");
    };
    let pairs: Vec<(String, String)> = proposal
        .matches
        .iter()
        .map(|a| (a.user_id.clone(), a.extension.clone()))
        .collect();
    assert_eq!(pairs, vec![("1".to_string(), "1001".to_string())]);
    assert!(
        proposal
            .unmatched
            .iter()
            .any(|u| u.user_id == "3" && matches!(u.reason, UnmatchedReason::NoEmail))
    );
    let v1 = plugin.save_associations(0, &proposal.matches);
    assert_eq!(v1.ok(), Some(1));
    // A save from a stale page loses.
    let stale = plugin.save_associations(0, &[assoc("2", "1002")]);
    assert!(matches!(stale, Err(PluginError::Conflict(_))));
    // One extension, one owner.
    let twice = plugin.save_associations(1, &[assoc("1", "1001"), assoc("2", "1001")]);
    assert!(matches!(twice, Err(PluginError::InvalidInput(_))));
    assert_eq!(
        plugin
            .user_for_extension("1001")
            .ok()
            .flatten()
            .map(|u| u.id),
        Some("1".to_string())
    );
    assert_eq!(
        plugin.extension_for_user("1").ok().flatten().as_deref(),
        Some("1001")
    );
}

#[test]
fn an_owner_gone_from_hubspot_is_a_stale_user_and_cannot_be_kept() {
    let (host, hs) = connected();
    hs.add_owner("1", "ann@acme.test", "Ann", 1);
    host.set_extensions(vec![extension("1001", Some("ann@acme.test"))]);
    let plugin = Plugin::new(host);
    sync_all(&plugin);
    assert_eq!(
        plugin.save_associations(0, &[assoc("1", "1001")]).ok(),
        Some(1)
    );
    hs.archive_owners();
    sync_all(&plugin);
    let list = plugin.list_users().map_err(|e| e.to_string());
    let states: Vec<_> = list
        .map(|l| {
            l.entries
                .into_iter()
                .map(|e| (e.user.id, e.state))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(states, vec![("1".to_string(), AssociationState::StaleUser)]);
    assert!(plugin.user_for_extension("1001").ok().flatten().is_none());
    let keep = plugin.save_associations(1, &[assoc("1", "1001")]);
    assert!(
        matches!(&keep, Err(PluginError::InvalidInput(m)) if m.contains("no longer an active HubSpot owner")),
        "{keep:?}"
    );
}

#[test]
fn click_to_call_needs_an_associated_extension() {
    let (host, hs) = connected();
    hs.add_owner("1", "ann@acme.test", "Ann", 1);
    host.set_extensions(vec![
        extension("1001", Some("ann@acme.test")),
        extension("1002", None),
    ]);
    let plugin = Plugin::new(host);
    sync_all(&plugin);
    let _ = plugin.save_associations(0, &[assoc("1", "1001")]);
    assert_eq!(
        plugin
            .authorize_dial("1001", "(415) 555-0100", "US")
            .ok()
            .as_deref(),
        Some("+14155550100")
    );
    assert!(matches!(
        plugin.authorize_dial("1002", "4155550100", "US"),
        Err(PluginError::NotConfigured(_))
    ));
    assert!(matches!(
        plugin.authorize_dial("1001", "call me", "US"),
        Err(PluginError::InvalidInput(_))
    ));
}
