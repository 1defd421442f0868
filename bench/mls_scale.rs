//! MLS sizes and times as a group grows to the meeting limit, natively, through the real
//! delivery service and member code:
//!
//! ```text
//! cargo run --release -p conclave-e2ee --example mls_scale -- blank 1000
//! cargo run --release -p conclave-e2ee --example mls_scale -- filled 1000
//! cargo run --release -p conclave-e2ee --example mls_scale -- needed 1000
//! ```
//!
//! The group grows from 1 in batches of up to 50 (one commit per batch, as the server proposes a
//! burst of admissions together). `blank`: only member 1 ever commits, as before newcomers
//! updated. `filled`: every newcomer makes one update commit right after its batch's. `needed`:
//! only the newcomers whose update would fill a parent later commits encrypt to
//! (`DeliveryService::update_would_fill`, about one per block of eight leaves), as the server
//! asks since the 150-member test showed one update epoch per newcomer to be too slow. At 100,
//! 300 and 1,000 members it prints one more commit adding one member: its size, the Welcome
//! (without the tree), the tree the server hands the newcomer, commit creation, a member
//! processing it, the newcomer joining.
//!
//! Live states: member 1 (the committer), member 2 (processes everything, for the process
//! time) and the newcomers of the current batch until they have updated; the others would
//! process the same messages on their own machines. The critical path adds, per epoch, commit
//! creation and one member's processing, and per batch one join: what a growing meeting waits
//! for when every member works in parallel.

use std::time::{Duration, Instant};

use conclave_e2ee::{DeliveryService, Member, Received};

const BATCH: usize = 50;
const MARKS: [usize; 3] = [100, 300, 1000];

struct Totals {
    critical: Duration,
    epochs: u64,
    largest_commit: usize,
    largest_welcome: usize,
    /// Newcomers not asked to update (mode `needed`).
    skipped: usize,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn announce(members: &mut [Member], ids: &[String]) {
    for m in members {
        m.set_announced(ids.iter().cloned());
    }
}

/// Every live member handles `commit`; the time of member 2's (index 1) is returned.
fn everyone_handles(members: &mut [Member], commit: &[u8], skip: Option<usize>) -> Duration {
    let mut observed = Duration::ZERO;
    for (i, m) in members.iter_mut().enumerate() {
        if Some(i) == skip {
            m.confirm_commit().expect("own commit");
            continue;
        }
        let start = Instant::now();
        let r = m.handle(commit).expect("commit");
        if i == 1 {
            observed = start.elapsed();
        }
        assert!(matches!(r, Received::Commit { .. }), "{r:?}");
    }
    observed
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (filled, only_needed) = match args.next().as_deref() {
        Some("filled") => (true, false),
        Some("needed") => (true, true),
        Some("blank") | None => (false, false),
        Some(other) => panic!("mode is blank, filled or needed, not {other}"),
    };
    let limit: usize = args.next().map_or(1000, |n| n.parse().expect("a size"));
    println!(
        "mode {}, growing 1 -> {limit} in batches of {BATCH}",
        match (filled, only_needed) {
            (true, true) => "needed",
            (true, false) => "filled",
            _ => "blank",
        }
    );

    let mut ds = DeliveryService::new().expect("ds");
    let mut first = Member::new("1").expect("member");
    let info = first
        .create_group(b"bench", &ds.external_sender())
        .expect("group");
    ds.observe_group(&info).expect("observe");
    // members[0] commits batches, members[1] processes for the figures, then this batch's
    // newcomers until they updated.
    let mut members = vec![first];
    let mut ids = vec!["1".to_string()];
    let mut next_id = 2usize;
    let mut totals = Totals {
        critical: Duration::ZERO,
        epochs: 0,
        largest_commit: 0,
        largest_welcome: 0,
        skipped: 0,
    };
    let grow_start = Instant::now();

    let mut size = 1usize;
    while size < limit {
        // Batches end on multiples of BATCH, so the group passes each mark.
        let batch = (BATCH - size % BATCH).min(limit - size);
        // One commit adding `batch` newcomers.
        let mut newcomers = Vec::new();
        let mut proposals = Vec::new();
        for _ in 0..batch {
            let id = next_id.to_string();
            next_id += 1;
            let member = Member::new(&id).expect("member");
            let kp = member.key_package().expect("kp");
            proposals.push(ds.propose_add(&kp).expect("propose add"));
            ids.push(id);
            newcomers.push(member);
        }
        announce(&mut members, &ids);
        for p in &proposals {
            for m in members.iter_mut() {
                m.handle(p).expect("proposal");
            }
        }
        let start = Instant::now();
        let out = members[0].commit().expect("commit").expect("adds");
        let created = start.elapsed();
        ds.accept_commit(&out.commit).expect("accepted");
        let processed = everyone_handles(&mut members, &out.commit, Some(0));
        let welcome = out.welcome.expect("welcome");
        let tree = ds.ratchet_tree().expect("tree");
        totals.largest_commit = totals.largest_commit.max(out.commit.len());
        totals.largest_welcome = totals.largest_welcome.max(welcome.len());
        let mut join = Duration::ZERO;
        if filled || members.len() < 2 {
            for n in &mut newcomers {
                let start = Instant::now();
                n.join(&welcome, &tree).expect("join");
                join = join.max(start.elapsed());
            }
        }
        totals.critical += created + processed + join;
        totals.epochs += 1;
        size += batch;

        if members.len() < 2 {
            // Member 2 stays live for the process figures.
            members.push(newcomers.remove(0));
        }
        if filled {
            // Each newcomer of the batch updates in turn; the live ones process each update.
            let mut live = members;
            let keep = live.len();
            live.append(&mut newcomers);
            let mut last_update = (0usize, Duration::ZERO);
            while live.len() > keep {
                let at = keep;
                if only_needed
                    && !ds
                        .update_would_fill(live[at].participant_id())
                        .expect("a member")
                {
                    totals.skipped += 1;
                    live.remove(at);
                    continue;
                }
                let start = Instant::now();
                let out = live[at].update().expect("update");
                let created = start.elapsed();
                ds.accept_commit(&out.commit).expect("update accepted");
                let processed = everyone_handles(&mut live, &out.commit, Some(at));
                totals.critical += created + processed;
                totals.epochs += 1;
                totals.largest_commit = totals.largest_commit.max(out.commit.len());
                last_update = (out.commit.len(), created);
                live.remove(at);
            }
            members = live;
            if MARKS.contains(&size) {
                println!(
                    "  at {size}: last newcomer's update commit {} B, created in {:.2} ms",
                    last_update.0,
                    ms(last_update.1)
                );
            }
        }

        if MARKS.contains(&size) {
            measure_one_add(&mut ds, &mut members, &mut ids, &mut next_id, size);
        }
    }
    println!(
        "grown to {limit}: {} epochs ({} newcomers did not update), {:.1} s of CPU on one \
         thread here, critical path {:.2} s; largest commit {} B, largest Welcome {} B",
        totals.epochs,
        totals.skipped,
        grow_start.elapsed().as_secs_f64(),
        totals.critical.as_secs_f64(),
        totals.largest_commit,
        totals.largest_welcome,
    );
}

/// One commit adding one member to a group of `size`: the figures of an ordinary epoch.
fn measure_one_add(
    ds: &mut DeliveryService,
    members: &mut [Member],
    ids: &mut Vec<String>,
    next_id: &mut usize,
    size: usize,
) {
    let id = next_id.to_string();
    *next_id += 1;
    let mut newcomer = Member::new(&id).expect("member");
    let proposal = ds
        .propose_add(&newcomer.key_package().expect("kp"))
        .expect("add");
    ids.push(id.clone());
    announce(members, ids);
    for m in members.iter_mut() {
        m.handle(&proposal).expect("proposal");
    }
    let start = Instant::now();
    let out = members[0].commit().expect("commit").expect("adds");
    let created = start.elapsed();
    ds.accept_commit(&out.commit).expect("accepted");
    let processed = everyone_handles(members, &out.commit, Some(0));
    let welcome = out.welcome.expect("welcome");
    let tree = ds.ratchet_tree().expect("tree");
    let start = Instant::now();
    newcomer.join(&welcome, &tree).expect("join");
    let joined = start.elapsed();
    println!(
        "  {size} + 1: commit {} B created in {:.2} ms, processed in {:.2} ms; \
         Welcome {} B (no tree); tree {} B; newcomer joins in {:.2} ms",
        out.commit.len(),
        ms(created),
        ms(processed),
        welcome.len(),
        tree.len(),
        ms(joined),
    );
    // Take the newcomer out again so the group stays at the mark's size.
    let remove = ds.propose_remove(&id).expect("remove");
    ids.pop();
    announce(members, ids);
    for m in members.iter_mut() {
        m.handle(&remove).expect("proposal");
    }
    let out = members[0].commit().expect("commit").expect("removes");
    ds.accept_commit(&out.commit).expect("accepted");
    everyone_handles(members, &out.commit, Some(0));
}
