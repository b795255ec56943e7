//! Choosing an instance for a new connection: least connections, ties
//! broken by rotation so equal instances take turns. Pure.

/// The index of the candidate with the fewest open connections among those
/// not `excluded`, looking from `rotation` onwards so that ties rotate; none
/// if every candidate is excluded.
pub fn least_connections(open: &[u64], excluded: &[bool], rotation: usize) -> Option<usize> {
    let n = open.len();
    (0..n)
        .map(|i| (rotation + i) % n)
        .filter(|&i| !excluded.get(i).copied().unwrap_or(false))
        .min_by_key(|&i| open[i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_least_loaded_wins_and_ties_rotate() {
        assert_eq!(least_connections(&[3, 1, 2], &[false; 3], 0), Some(1));
        assert_eq!(least_connections(&[1, 1, 1], &[false; 3], 0), Some(0));
        assert_eq!(least_connections(&[1, 1, 1], &[false; 3], 1), Some(1));
        assert_eq!(least_connections(&[1, 1, 1], &[false; 3], 5), Some(2));
        assert_eq!(least_connections(&[0, 9], &[true, false], 0), Some(1));
        assert_eq!(least_connections(&[0], &[true], 0), None);
        assert_eq!(least_connections(&[], &[], 3), None);
    }

    proptest! {
        #[test]
        fn never_picks_an_excluded_or_busier_candidate(
            open in proptest::collection::vec(0u64..5, 1..8),
            excluded in proptest::collection::vec(any::<bool>(), 8),
            rotation in 0usize..100,
        ) {
            let excluded = &excluded[..open.len()];
            match least_connections(&open, excluded, rotation) {
                Some(i) => {
                    prop_assert!(!excluded[i]);
                    for (j, &o) in open.iter().enumerate() {
                        prop_assert!(excluded[j] || o >= open[i]);
                    }
                }
                None => prop_assert!(excluded.iter().all(|&e| e)),
            }
        }

        #[test]
        fn equal_candidates_are_each_chosen_in_turn(n in 1usize..8) {
            let open = vec![0u64; n];
            let mut seen: Vec<usize> = (0..n).filter_map(|r| least_connections(&open, &vec![false; n], r)).collect();
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..n).collect::<Vec<_>>());
        }
    }
}
