//! How a file's items are spread over redb tables: its *parts*.
//!
//! A store keeps each file's items in `n` item tables (its [`Parts`], recorded in the meta
//! table); an item lives in the table its id hashes to ([`Parts::of`]), so a point read or
//! write touches one table, and a scan merges the tables in id order ([`super::read`]).
//!
//! Why more than one: redb lets one write transaction at a time change the file, and inserts
//! into one B-tree one at a time. A full sync's load (millions of items) spent its time in
//! those inserts, on one core, while the other idled once the master had sent the snapshot.
//! Tables of one transaction can be filled by threads of their own ([`super::Filler`]): with
//! two parts the loader fills both at once.
//!
//! Stores of format 1 (made before parts) have one part, named as before (`f:{file}`); a
//! store this build creates has [`NEW_PARTS`] and format 2, which older builds refuse instead
//! of reading half of each file.

/// Parts of each file in a store this build creates.
pub const NEW_PARTS: u32 = 2;
/// Most parts a store may have (a larger number in the meta table means a damaged store).
pub const MAX_PARTS: u32 = 16;

/// The number of item tables of each file in one store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts(u32);

impl Parts {
    /// One part: a store of format 1.
    pub const ONE: Parts = Parts(1);

    /// `n` parts; None unless 1 <= n <= [`MAX_PARTS`].
    pub fn new(n: u64) -> Option<Parts> {
        (1..=u64::from(MAX_PARTS))
            .contains(&n)
            .then_some(Parts(n as u32))
    }

    pub fn count(self) -> usize {
        self.0 as usize
    }

    /// The part an item id lives in. Fixed forever for a store: it is part of its format.
    pub fn of(self, id: &[u8]) -> usize {
        if self.0 == 1 {
            return 0;
        }
        // FNV-1a, then MurmurHash3's 64-bit finaliser (FNV alone spreads ids that differ in
        // their last bytes unevenly); the part comes from the top 32 bits, scaled to the count.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in id {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        (((h >> 32) * u64::from(self.0)) >> 32) as usize
    }
}

/// Name of the table of part `part` of a file. Part 0 keeps the name a file's one table had
/// in format 1; the prefixes cannot meet (a file name follows the first ':').
pub fn table_name(file: &str, part: usize) -> String {
    if part == 0 {
        format!("f:{file}")
    } else {
        format!("f{part}:{file}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_outside_one_to_the_maximum_is_refused() {
        assert_eq!(Parts::new(0), None);
        assert_eq!(Parts::new(u64::from(MAX_PARTS) + 1), None);
        assert_eq!(Parts::new(u64::from(u32::MAX) + 2), None);
        assert_eq!(Parts::new(2).map(Parts::count), Some(2));
    }

    #[test]
    fn ids_spread_evenly_over_the_parts_and_always_to_the_same_one() {
        for n in [2u64, 3, 4] {
            let parts = Parts::new(n).expect("valid count");
            let mut counts = vec![0usize; parts.count()];
            for i in 0..100_000 {
                let id = format!("item:{i:012}");
                let p = parts.of(id.as_bytes());
                assert_eq!(p, parts.of(id.as_bytes()));
                counts[p] += 1;
            }
            let even = 100_000 / parts.count();
            for c in counts {
                assert!(c.abs_diff(even) < even / 50, "{n} parts: {c} of {even}");
            }
        }
        assert_eq!(Parts::ONE.of(b"anything"), 0);
    }

    #[test]
    fn the_part_of_an_id_is_fixed() {
        // These values are part of the store format: a change would lose items.
        let two = Parts::new(2).expect("valid count");
        let got: Vec<usize> = ["", "a", "b", "key:1", "item:000000000000"]
            .iter()
            .map(|id| two.of(id.as_bytes()))
            .collect();
        assert_eq!(got, FIXED_TWO);
    }

    const FIXED_TWO: [usize; 5] = [1, 1, 0, 0, 0];

    #[test]
    fn table_names_of_parts_differ_from_every_file_name() {
        assert_eq!(table_name("main", 0), "f:main");
        assert_eq!(table_name("main", 1), "f1:main");
        assert_ne!(table_name("1:main", 0), table_name("main", 1));
    }
}
