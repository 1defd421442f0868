//! Whether a member's update commit would make later commits smaller.
//!
//! A commit encrypts its path secrets to the resolution of each node on the
//! committer's copath: one ciphertext for a filled parent, one per leaf under a
//! blank one, plus one per unmerged leaf of a filled one. Only a commit through
//! a node fills it or clears its unmerged leaves, so a tree where only the
//! delivery service's named committer ever commits stays blank and every commit
//! costs O(n). Asking *every* newcomer for an update commit fills the tree, but
//! each update is one epoch that every member processes in turn: 150 newcomers
//! meant 150 epochs in sequence, which took a 150-member meeting about 100 s to
//! settle.
//!
//! Parents covering fewer than `2^FILL_FROM_LEVEL` leaves may stay blank: below
//! that level a copath node's resolution is at most `2^level` leaves, so the
//! copath costs at most `2^FILL_FROM_LEVEL - 1` extra ciphertexts in all (7 at
//! level 3: 14 instead of 10 at 1,000 members), and one newcomer's update per
//! block of eight leaves fills everything above. The root is never on anyone's
//! copath, and a parent whose other child has an empty resolution is not on
//! the filtered path (RFC 9420 §4.1.2): that member's commit would not fill it.
//! A filled parent may hold up to [`MAX_UNMERGED`] unmerged leaves (one more
//! ciphertext each) before a newcomer under it is asked: members who arrive one
//! at a time would otherwise each cost an update epoch, as every Add makes the
//! newcomer an unmerged leaf of its filled ancestors. So a commit at 1,000
//! members encrypts to at most `10 × (1 + 3) + 7` resolutions, usually far
//! fewer, against about 1,000 over a blank tree.

use mls_rs::group::Node;

/// Lowest tree level whose parents an update commit is asked to fill (level 0
/// is the leaves; a level-3 parent covers eight leaves).
pub const FILL_FROM_LEVEL: u32 = 3;

/// Unmerged leaves a filled parent may hold before an update through it is asked for.
pub const MAX_UNMERGED: usize = 3;

/// True when `leaf`'s filtered direct path, from [`FILL_FROM_LEVEL`] up and
/// without the root, holds a blank parent or one with more than
/// [`MAX_UNMERGED`] unmerged leaves: its
/// update commit would fill or clear it. `nodes` is the tree in RFC 9420's
/// array layout (blank as `None`, trailing blanks possibly left out).
pub fn update_would_fill(nodes: &[Option<Node>], leaf: u32) -> bool {
    parents_to_fill(nodes, leaf) > 0
}

/// How many parents `leaf`'s update commit would fill or clear (those
/// [`update_would_fill`] looks for). After removals, which blank the removed
/// leaves' direct paths, the member with the most is the one whose update
/// shrinks later commits most: the delivery service asks it first.
pub fn parents_to_fill(nodes: &[Option<Node>], leaf: u32) -> usize {
    let leaves = (nodes.len() as u32 / 2 + 1).next_power_of_two();
    let root = leaves - 1;
    let mut x = 2 * leaf;
    let mut level = 0u32;
    let mut count = 0;
    while x != root {
        let (parent, sibling) = parent_and_sibling(x, level);
        level += 1;
        x = parent;
        if x == root || level < FILL_FROM_LEVEL || subtree_is_empty(nodes, sibling, level - 1) {
            continue;
        }
        match nodes.get(x as usize).and_then(Option::as_ref) {
            Some(Node::Parent(p)) if p.unmerged_leaves.len() <= MAX_UNMERGED => {}
            _ => count += 1,
        }
    }
    count
}

/// The parent and the sibling of node `x` at `level` (left-balanced array layout).
fn parent_and_sibling(x: u32, level: u32) -> (u32, u32) {
    let right_child = (x >> (level + 1)) & 1 == 1;
    if right_child {
        (x - (1 << level), x - (1 << (level + 1)))
    } else {
        (x + (1 << level), x + (1 << (level + 1)))
    }
}

/// Whether every node under `x` (at `level`) is blank: its resolution is empty.
fn subtree_is_empty(nodes: &[Option<Node>], x: u32, level: u32) -> bool {
    let span = (1u32 << level) - 1;
    let first = (x - span) as usize;
    let last = (x + span) as usize;
    nodes
        .iter()
        .skip(first)
        .take(last + 1 - first)
        .all(Option::is_none)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_and_siblings_follow_the_array_layout() {
        assert_eq!(parent_and_sibling(0, 0), (1, 2));
        assert_eq!(parent_and_sibling(2, 0), (1, 0));
        assert_eq!(parent_and_sibling(1, 1), (3, 5));
        assert_eq!(parent_and_sibling(5, 1), (3, 1));
        assert_eq!(parent_and_sibling(3, 2), (7, 11));
        assert_eq!(parent_and_sibling(11, 2), (7, 3));
        assert_eq!(parent_and_sibling(7, 3), (15, 23));
    }
}
