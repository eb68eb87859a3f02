//! RFC 6962 Merkle tree hashing for the audit log, plus the per-record hash chain.
//! Leaves are `SHA-256(0x00 || data)`, interior nodes `SHA-256(0x01 || left || right)`.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// RFC 6962 leaf hash.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// RFC 6962 interior node hash.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Hash chain link: `SHA-256(prev || leaf)`; the chain starts from 32 zero bytes.
pub fn chain_hash(prev: &Hash, leaf: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(leaf);
    h.finalize().into()
}

/// Largest power of two strictly less than `n` (n ≥ 2).
fn split_point(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// RFC 6962 Merkle Tree Hash of `leaves` (already leaf-hashed). The empty tree hashes to SHA-256("").
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = split_point(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// RFC 6962 §2.1.1 audit path for leaf `index` in the tree of `leaves`. `None` if out of range.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    fn walk(leaves: &[Hash], m: usize, path: &mut Vec<Hash>) {
        let n = leaves.len();
        if n <= 1 {
            return;
        }
        let k = split_point(n);
        if m < k {
            walk(&leaves[..k], m, path);
            path.push(root(&leaves[k..]));
        } else {
            walk(&leaves[k..], m - k, path);
            path.push(root(&leaves[..k]));
        }
    }
    walk(leaves, index, &mut path);
    Some(path)
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2 algorithm) of `leaf` at `index` in a tree of `size`.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

/// Incrementally maintained Merkle root (the "compact range" of the tree's right edge):
/// appending is O(log n) and the root is available at any size without re-reading leaves.
#[derive(Debug, Clone, Default)]
pub struct CompactTree {
    /// Perfect subtree roots, from the largest (leftmost) to the smallest.
    stack: Vec<(u32, Hash)>,
    size: u64,
}

impl CompactTree {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn push(&mut self, leaf: Hash) {
        let mut node = (0u32, leaf);
        while let Some(&(h, top)) = self.stack.last() {
            if h != node.0 {
                break;
            }
            self.stack.pop();
            node = (h + 1, node_hash(&top, &node.1));
        }
        self.stack.push(node);
        self.size += 1;
    }
    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        match it.next() {
            None => Sha256::digest([]).into(),
            Some(&(_, first)) => it.fold(first, |acc, (_, h)| node_hash(h, &acc)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        let hex: String = root(&[]).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn proofs_verify_for_every_leaf_and_size() {
        for n in 1..40 {
            let l = leaves(n);
            let r = root(&l);
            for i in 0..n {
                let p = inclusion_proof(&l, i).unwrap();
                assert!(
                    verify_inclusion(&l[i], i as u64, n as u64, &p, &r),
                    "n={n} i={i}"
                );
                // A different leaf or index must fail.
                let other = leaf_hash(b"x");
                assert!(!verify_inclusion(&other, i as u64, n as u64, &p, &r));
                if n > 1 {
                    assert!(!verify_inclusion(
                        &l[i],
                        ((i + 1) % n) as u64,
                        n as u64,
                        &p,
                        &r
                    ));
                }
            }
        }
    }

    #[test]
    fn compact_tree_matches_full_root() {
        let l = leaves(70);
        let mut c = CompactTree::new();
        for (i, x) in l.iter().enumerate() {
            c.push(*x);
            assert_eq!(c.root(), root(&l[..=i]), "size {}", i + 1);
        }
    }
}
