//! MLS messages at the server's delivery service: what members send it. The first byte picks
//! the entry point (mod 4), the rest is the message:
//! - 0: [`DeliveryService::check_key_package`] (an `mls_key_package` from a waiting person);
//! - 1: [`DeliveryService::accept_commit`] on a service following a two-member group
//!   (an `mls_commit`);
//! - 2: [`DeliveryService::observe_group`] on a fresh service (an `mls_group_info`);
//! - 3: [`DeliveryService::propose_add`] with the bytes as a key package.
//!
//! Checked: nothing panics; a refused commit leaves the service's epoch and roster as they
//! were; a key package accepted for participant "7" is one the service can propose.

use conclave_e2ee::DeliveryService;

use crate::corpus;
use crate::mls::Group;

pub fn run(data: &[u8]) {
    let Some((&selector, message)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => {
            if DeliveryService::check_key_package(message, "7").is_ok()
                && let Ok(mut ds) = DeliveryService::new()
            {
                // A service with no group yet refuses to propose, but must not panic.
                let _ = ds.propose_add(message);
            }
        }
        1 => {
            let Some(mut group) = Group::two() else {
                return;
            };
            let (epoch, roster) = (group.ds.epoch(), group.ds.roster());
            if group.ds.accept_commit(message).is_err() {
                assert_eq!(group.ds.epoch(), epoch, "a refused commit moved the epoch");
                assert_eq!(
                    group.ds.roster(),
                    roster,
                    "a refused commit changed the roster"
                );
            }
        }
        2 => {
            if let Ok(mut ds) = DeliveryService::new()
                && ds.observe_group(message).is_ok()
            {
                let _ = ds.roster();
            }
        }
        _ => {
            let Some(mut group) = Group::two() else {
                return;
            };
            let _ = group.ds.propose_add(message);
        }
    }
}

/// Real key packages, commits and group infos, each behind its entry point's selector.
pub fn seeds() -> Vec<Vec<u8>> {
    let Some(mut group) = Group::two() else {
        return Vec::new();
    };
    let mut seeds = Vec::new();
    let mut push = |selector: u8, bytes: &[u8]| seeds.push(corpus::with_selector(selector, bytes));
    for (what, bytes) in &group.wire {
        match *what {
            "key_package" => {
                push(0, bytes);
                push(3, bytes);
            }
            "commit" => push(1, bytes),
            "group_info" => push(2, bytes),
            _ => {}
        }
    }
    if let Ok(kp) = conclave_e2ee::Member::new("7").and_then(|m| m.key_package()) {
        push(0, &kp);
    }
    if let Ok(remove) = group.ds.propose_remove("2") {
        for m in &mut group.members {
            let _ = m.handle(&remove);
        }
        if let Ok(Some(out)) = group.members[0].commit() {
            push(1, &out.commit);
        }
    }
    seeds
}
