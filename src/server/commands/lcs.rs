//! LCS (`LEN`, `IDX`, `MINMATCHLEN`, `WITHMATCHLEN`): the longest common subsequence of two
//! string values, computed and reported as Redis 7's `lcsCommand` (`t_string.c`) does, down to
//! which of several equally long subsequences it picks and how it splits it into ranges.
//!
//! A missing key is an empty string. The values are looked up under both keys' locks, then the
//! locks are let go before the quadratic work: a long value is shared with its entry, not copied.

use bytes::Bytes;

use super::{Ctx, ERR_SYNTAX, int_arg, is};
use crate::server::resp::{PROTO_MAX_BULK_LEN, Reply};
use crate::server::value::Value;

/// What LCS is asked to report.
#[derive(Debug, Default, PartialEq, Eq)]
struct LcsOptions {
    /// `LEN`: the length only.
    len: bool,
    /// `IDX`: the matching ranges and the length.
    idx: bool,
    /// `MINMATCHLEN`: ranges shorter than this are left out of IDX's list (negative is 0).
    min_match_len: i64,
    /// `WITHMATCHLEN`: each IDX range also gives its length.
    with_match_len: bool,
}

/// The options after the two keys, in Redis's order of checks: each option as it comes (a bad
/// one is a syntax error, a bad MINMATCHLEN an integer error), then LEN with IDX.
fn parse_options(args: &[Bytes]) -> Result<LcsOptions, Reply> {
    let mut opts = LcsOptions::default();
    let mut i = 3;
    while i < args.len() {
        let arg = &args[i];
        if is(arg, "IDX") {
            opts.idx = true;
        } else if is(arg, "LEN") {
            opts.len = true;
        } else if is(arg, "WITHMATCHLEN") {
            opts.with_match_len = true;
        } else if let (true, Some(min)) = (is(arg, "MINMATCHLEN"), args.get(i + 1)) {
            opts.min_match_len = int_arg(min)?.max(0);
            i += 1;
        } else {
            return Err(Reply::error(ERR_SYNTAX));
        }
        i += 1;
    }
    if opts.idx && opts.len {
        return Err(Reply::error(
            "ERR If you want both the length and indexes, please just use IDX.",
        ));
    }
    Ok(opts)
}

pub fn lcs(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    let (a, b) = {
        let mut locks = ctx.lock_pair(&args[1], &args[2]);
        // Reads, counted as keyspace hits or misses (Redis's `lookupKeyRead`).
        let a = locks.first().lookup_read(&args[1], now).map(|e| e.value.clone());
        let b = locks.second().lookup_read(&args[2], now).map(|e| e.value.clone());
        (a, b)
    };
    let (a, b) = match (a.as_ref().map(Value::as_bytes), b.as_ref().map(Value::as_bytes)) {
        (Some(Err(_)), _) | (_, Some(Err(_))) => {
            return Reply::error("ERR The specified keys must contain string values");
        }
        (a, b) => (a.and_then(Result::ok), b.and_then(Result::ok)),
    };
    let opts = match parse_options(args) {
        Ok(opts) => opts,
        Err(e) => return e,
    };
    let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
    // Redis refuses a table (a 32-bit length per pair of prefixes) larger than
    // proto-max-bulk-len before it computes anything, whatever it is asked for.
    let cells = (a.len() as u64 + 1) * (b.len() as u64 + 1);
    if cells * 4 > PROTO_MAX_BULK_LEN as u64 {
        return Reply::error(
            "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        );
    }
    if opts.len {
        return Reply::Integer(i64::from(lcs_len(a, b)));
    }
    let Some(table) = LcsTable::build(a, b) else {
        return Reply::error("ERR Insufficient memory, failed allocating transient memory for LCS");
    };
    let (common, ranges) = table.walk_back(a, b, &opts);
    if !opts.idx {
        return Reply::Bulk(Bytes::from(common));
    }
    Reply::Map(vec![
        (Reply::bulk_str("matches"), Reply::Array(ranges)),
        (Reply::bulk_str("len"), Reply::Integer(i64::from(table.len(a.len(), b.len())))),
    ])
}

/// The length of the longest common subsequence, two rows of the table at a time: LEN needs no
/// walk back, so not the whole table Redis allocates for it.
fn lcs_len(a: &[u8], b: &[u8]) -> u32 {
    let mut above = vec![0u32; b.len() + 1];
    let mut row = vec![0u32; b.len() + 1];
    for &ca in a {
        for (j, &cb) in b.iter().enumerate() {
            row[j + 1] = if ca == cb { above[j] + 1 } else { above[j + 1].max(row[j]) };
        }
        std::mem::swap(&mut above, &mut row);
    }
    above[b.len()]
}

/// Redis's table: at `(i, j)` the LCS length of `a[..i]` and `b[..j]`.
struct LcsTable {
    cells: Vec<u32>,
    /// `b.len() + 1`: the length of a row.
    width: usize,
}

impl LcsTable {
    /// The whole table, or `None` when its memory cannot be had.
    fn build(a: &[u8], b: &[u8]) -> Option<Self> {
        let width = b.len() + 1;
        let size = (a.len() + 1) * width;
        let mut cells = Vec::new();
        cells.try_reserve_exact(size).ok()?;
        cells.resize(size, 0);
        for (i, &ca) in a.iter().enumerate() {
            let (done, rest) = cells.split_at_mut((i + 1) * width);
            let above = &done[i * width..];
            let row = &mut rest[..width];
            for (j, &cb) in b.iter().enumerate() {
                row[j + 1] = if ca == cb { above[j] + 1 } else { above[j + 1].max(row[j]) };
            }
        }
        Some(Self { cells, width })
    }

    fn len(&self, i: usize, j: usize) -> u32 {
        self.cells[i * self.width + j]
    }

    /// Redis's walk from the table's end: the common subsequence, and IDX's ranges (longest
    /// contiguous runs, last first), each `[[a_start, a_end], [b_start, b_end]]` plus its length
    /// with WITHMATCHLEN, those shorter than MINMATCHLEN left out.
    fn walk_back(&self, a: &[u8], b: &[u8], opts: &LcsOptions) -> (Vec<u8>, Vec<Reply>) {
        let mut left = self.len(a.len(), b.len()) as usize;
        let mut common = vec![0u8; left];
        let mut ranges = Vec::new();
        // The current range; `a_start == a.len()` means none (Redis's sentinel).
        let no_range = a.len();
        let (mut a_start, mut a_end, mut b_start, mut b_end) = (no_range, 0, 0, 0);
        let (mut i, mut j) = (a.len(), b.len());
        while i > 0 && j > 0 {
            let mut emit = false;
            if a[i - 1] == b[j - 1] {
                common[left - 1] = a[i - 1];
                if a_start == no_range {
                    (a_start, a_end, b_start, b_end) = (i - 1, i - 1, j - 1, j - 1);
                } else if a_start == i && b_start == j {
                    // Contiguous with the range: extend it backward.
                    a_start -= 1;
                    b_start -= 1;
                } else {
                    emit = true;
                }
                // A range touching either string's start cannot grow further.
                if a_start == 0 || b_start == 0 {
                    emit = true;
                }
                left -= 1;
                i -= 1;
                j -= 1;
            } else {
                if self.len(i - 1, j) > self.len(i, j - 1) {
                    i -= 1;
                } else {
                    j -= 1;
                }
                emit = a_start != no_range;
            }
            if emit {
                let match_len = a_end - a_start + 1;
                if opts.idx && match_len as i64 >= opts.min_match_len {
                    let pair = |start: usize, end: usize| {
                        Reply::Array(vec![Reply::Integer(start as i64), Reply::Integer(end as i64)])
                    };
                    let mut range = vec![pair(a_start, a_end), pair(b_start, b_end)];
                    if opts.with_match_len {
                        range.push(Reply::Integer(match_len as i64));
                    }
                    ranges.push(Reply::Array(range));
                }
                a_start = no_range;
            }
        }
        (common, ranges)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(list: &[&str]) -> Result<LcsOptions, Reply> {
        let mut args = vec![Bytes::from("lcs"), Bytes::from("a"), Bytes::from("b")];
        args.extend(list.iter().map(|a| Bytes::copy_from_slice(a.as_bytes())));
        parse_options(&args)
    }

    #[test]
    fn options_are_checked_in_redis_order() {
        assert_eq!(options(&["MINMATCHLEN", "-5", "idx"]).map(|o| o.min_match_len), Ok(0));
        assert_eq!(options(&["minmatchlen"]), Err(Reply::error(ERR_SYNTAX)));
        assert_eq!(options(&["len", "idx", "foo"]), Err(Reply::error(ERR_SYNTAX)));
        assert_eq!(
            options(&["minmatchlen", "x", "len", "idx"]),
            Err(Reply::error(super::super::ERR_NOT_INTEGER))
        );
        assert!(options(&["idx", "len"]).is_err());
    }

    #[test]
    fn the_walk_back_picks_redis_subsequence_and_ranges() {
        let (a, b) = (&b"ohmytext"[..], &b"mynewtext"[..]);
        let table = LcsTable::build(a, b).expect("small table");
        let opts = LcsOptions { idx: true, with_match_len: true, ..LcsOptions::default() };
        let (common, ranges) = table.walk_back(a, b, &opts);
        assert_eq!(common, b"mytext");
        assert_eq!(table.len(a.len(), b.len()), 6);
        assert_eq!(lcs_len(a, b), 6);
        let range = |a: (i64, i64), b: (i64, i64), len: i64| {
            let pair = |(s, e)| Reply::Array(vec![Reply::Integer(s), Reply::Integer(e)]);
            Reply::Array(vec![pair(a), pair(b), Reply::Integer(len)])
        };
        assert_eq!(ranges, vec![range((4, 7), (5, 8), 4), range((2, 3), (0, 1), 2)]);
    }

    #[test]
    fn lengths_agree_between_the_two_row_count_and_the_table() {
        let cases: [(&[u8], &[u8]); 5] = [
            (b"", b""),
            (b"abc", b""),
            (b"abcXdefYghi", b"abcZdefWghi"),
            (b"aaaa", b"aa"),
            (b"GXTXAYB", b"AGGTAB"),
        ];
        for (a, b) in cases {
            let table = LcsTable::build(a, b).expect("small table");
            let (common, _) = table.walk_back(a, b, &LcsOptions::default());
            assert_eq!(lcs_len(a, b), table.len(a.len(), b.len()), "{a:?} {b:?}");
            assert_eq!(common.len() as u32, lcs_len(a, b));
        }
    }
}
