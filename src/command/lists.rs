//! List commands.
//!
//! A list is a deque of packed chunks (`keyspace::List`, Redis's
//! quicklist): pushes and pops at both ends are O(1); an index walks the
//! chunks, so commands that visit many elements walk once.
//!
//! Effects: list writes are deterministic and recorded as themselves when
//! they change something.

use bytes::Bytes;

use super::args::{int, positive_count, Args};
use super::{block_deadline, flags::*, key_flags::*, keys, keys_counted, spec, Ctx, Spec};
use crate::error::{CmdResult, CommandError};
use crate::keyspace::list::ChunkLimit;
use crate::keyspace::{List, SmallBuf};

const G: &str = "list";
const L: &[&str] = &["list"];

#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    spec("lpush", -3, WRITE | DENYOOM | FAST, keys(1, 1, 1).flags(RW | INSERT), L, G, "Prepends one or more elements to a list. Creates the key if it doesn't exist.", lpush),
    spec("rpush", -3, WRITE | DENYOOM | FAST, keys(1, 1, 1).flags(RW | INSERT), L, G, "Appends one or more elements to a list. Creates the key if it doesn't exist.", rpush),
    spec("lpushx", -3, WRITE | DENYOOM | FAST, keys(1, 1, 1).flags(RW | INSERT), L, G, "Prepends one or more elements to a list only when the list exists.", lpushx),
    spec("rpushx", -3, WRITE | DENYOOM | FAST, keys(1, 1, 1).flags(RW | INSERT), L, G, "Appends an element to a list only when the list exists.", rpushx),
    spec("lpop", -2, WRITE | FAST, keys(1, 1, 1).flags(RW | ACCESS | DELETE), L, G, "Returns the first elements in a list after removing it. Deletes the list if the last element was popped.", lpop),
    spec("rpop", -2, WRITE | FAST, keys(1, 1, 1).flags(RW | ACCESS | DELETE), L, G, "Returns and removes the last elements of a list. Deletes the list if the last element was popped.", rpop),
    spec("llen", 2, READONLY | FAST, keys(1, 1, 1).flags(RO), L, G, "Returns the length of a list.", llen),
    spec("lindex", 3, READONLY, keys(1, 1, 1).flags(RO | ACCESS), L, G, "Returns an element from a list by its index.", lindex),
    spec("linsert", 5, WRITE | DENYOOM, keys(1, 1, 1).flags(RW | INSERT), L, G, "Inserts an element before or after another element in a list.", linsert),
    spec("lpos", -3, READONLY, keys(1, 1, 1).flags(RO | ACCESS), L, G, "Returns the index of matching elements in a list.", lpos),
    spec("lrange", 4, READONLY, keys(1, 1, 1).flags(RO | ACCESS), L, G, "Returns a range of elements from a list.", lrange),
    spec("lrem", 4, WRITE, keys(1, 1, 1).flags(RW | DELETE), L, G, "Removes elements from a list. Deletes the list if the last element was removed.", lrem),
    spec("lset", 4, WRITE | DENYOOM, keys(1, 1, 1).flags(RW | UPDATE), L, G, "Sets the value of an element in a list by its index.", lset),
    spec("ltrim", 4, WRITE, keys(1, 1, 1).flags(RW | DELETE), L, G, "Removes elements from both ends a list. Deletes the list if all elements were trimmed.", ltrim),
    spec("lmove", 5, WRITE | DENYOOM, keys(1, 2, 1).flags(RW | ACCESS | DELETE).then(RW | INSERT), L, G, "Returns an element after popping it from one list and pushing it to another. Deletes the list if the last element was moved.", lmove),
    spec("rpoplpush", 3, WRITE | DENYOOM, keys(1, 2, 1).flags(RW | ACCESS | DELETE).then(RW | INSERT), L, G, "Returns the last element of a list after removing and pushing it to another list. Deletes the list if the last element was popped.", rpoplpush),
    spec("lmpop", -4, WRITE, keys_counted(0, 0, 1).flags(RW | ACCESS | DELETE), L, G, "Returns multiple elements from a list after removing them. Deletes the list if the last element was popped.", lmpop),
    spec("blpop", -3, WRITE | NOSCRIPT | BLOCKING, keys(1, -2, 1).flags(RW | ACCESS | DELETE), L, G, "Removes and returns the first element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped.", blpop),
    spec("brpop", -3, WRITE | NOSCRIPT | BLOCKING, keys(1, -2, 1).flags(RW | ACCESS | DELETE), L, G, "Removes and returns the last element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped.", brpop),
    spec("blmove", 6, WRITE | DENYOOM | NOSCRIPT | BLOCKING, keys(1, 2, 1).flags(RW | ACCESS | DELETE).then(RW | INSERT), L, G, "Pops an element from a list, pushes it to another list and returns it. Blocks until an element is available otherwise. Deletes the list if the last element was moved.", blmove),
    spec("brpoplpush", 4, WRITE | DENYOOM | NOSCRIPT | BLOCKING, keys(1, 2, 1).flags(RW | ACCESS | DELETE).then(RW | INSERT), L, G, "Pops an element from a list, pushes it to another list and returns it. Block until an element is available otherwise. Deletes the list if the last element was popped.", brpoplpush),
    spec("blmpop", -5, WRITE | BLOCKING, keys_counted(0, 0, 2).flags(RW | ACCESS | DELETE), L, G, "Pops the first element from one of multiple lists. Blocks until an element is available otherwise. Deletes the list if the last element was popped.", blmpop),
];

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum End {
    Left,
    Right,
}

impl End {
    /// The pop that takes from this end, as recorded.
    fn pop_name(self) -> &'static [u8] {
        match self {
            End::Left => b"LPOP",
            End::Right => b"RPOP",
        }
    }

    fn parse(a: &[u8]) -> Result<End, CommandError> {
        if a.eq_ignore_ascii_case(b"left") {
            Ok(End::Left)
        } else if a.eq_ignore_ascii_case(b"right") {
            Ok(End::Right)
        } else {
            Err(CommandError::Syntax)
        }
    }
}

fn push(l: &mut List, end: End, e: &[u8], limit: ChunkLimit) {
    match end {
        End::Left => l.push_front(e, limit),
        End::Right => l.push_back(e, limit),
    }
}

fn pop(l: &mut List, end: End) -> Option<SmallBuf> {
    match end {
        End::Left => l.pop_front(),
        End::Right => l.pop_back(),
    }
}

fn push_generic(ctx: &mut Ctx, argv: &[Bytes], end: End, only_existing: bool) -> CmdResult {
    let key = &argv[1];
    let limit = ctx.encodings().list;
    let mut t = ctx.lock_key(key);
    let l: &mut List = if only_existing {
        match ctx.write::<List>(&mut t, key)? {
            Some(l) => l,
            None => {
                ctx.out.int(0);
                return Ok(());
            }
        }
    } else {
        ctx.write_or_create(&mut t, key)?
    };
    for e in &argv[2..] {
        push(l, end, e, limit);
    }
    let len = l.len();
    ctx.emit_argv(argv);
    ctx.out.int(len as i64);
    Ok(())
}

fn lpush(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    push_generic(ctx, argv, End::Left, false)
}

fn rpush(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    push_generic(ctx, argv, End::Right, false)
}

fn lpushx(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    push_generic(ctx, argv, End::Left, true)
}

fn rpushx(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    push_generic(ctx, argv, End::Right, true)
}

fn pop_generic(ctx: &mut Ctx, argv: &[Bytes], end: End) -> CmdResult {
    let count = match argv.len() {
        2 => None,
        3 => Some(positive_count(&argv[2])?),
        _ => return Err(CommandError::Arity(end_name(end, "pop"))),
    };
    let key = &argv[1];
    let mut t = ctx.lock_key(key);
    let Some(l) = ctx.write::<List>(&mut t, key)? else {
        match count {
            Some(_) => ctx.out.null_array(),
            None => ctx.out.null(),
        }
        return Ok(());
    };
    match count {
        None => {
            let e = pop(l, end).expect("stored lists are never empty");
            ctx.out.bulk(e.as_bytes());
        }
        Some(n) => {
            let n = n.min(l.len());
            ctx.out.array(n);
            for _ in 0..n {
                let e = pop(l, end).expect("counted");
                ctx.out.bulk(e.as_bytes());
            }
            if n == 0 {
                return Ok(());
            }
        }
    }
    ctx.remove_if_empty::<List>(&mut t, key);
    ctx.emit_argv(argv);
    Ok(())
}

fn end_name(end: End, op: &str) -> String {
    match end {
        End::Left => format!("l{op}"),
        End::Right => format!("r{op}"),
    }
}

fn lpop(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    pop_generic(ctx, argv, End::Left)
}

fn rpop(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    pop_generic(ctx, argv, End::Right)
}

fn llen(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    ctx.reply_count::<List>(&argv[1])
}

/// A possibly negative index into a list of `len`, if it is in range.
fn index(i: i64, len: usize) -> Option<usize> {
    let i = if i < 0 { i + len as i64 } else { i };
    (0..len as i64).contains(&i).then_some(i as usize)
}

/// Redis's clamping of a (start, stop) range with negative indexes;
/// `None` when the range is empty.
pub fn clamp_range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 {
        (start + len).max(0)
    } else {
        start
    };
    let stop = if stop < 0 {
        stop + len
    } else {
        stop.min(len - 1)
    };
    (start <= stop && start < len).then_some((start as usize, stop as usize))
}

fn lindex(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut t = ctx.lock_key(&argv[1]);
    // Redis looks at the key before the index: a missing key is nil and a
    // wrong type WRONGTYPE whatever the index says.
    let Some(l) = ctx.read::<List>(&mut t, &argv[1])? else {
        ctx.out.null();
        return Ok(());
    };
    match index(int(&argv[2])?, l.len()).and_then(|i| l.get(i)) {
        Some(e) => ctx.out.bulk(&e),
        None => ctx.out.null(),
    }
    Ok(())
}

fn linsert(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let after = if argv[2].eq_ignore_ascii_case(b"after") {
        true
    } else if argv[2].eq_ignore_ascii_case(b"before") {
        false
    } else {
        return Err(CommandError::Syntax);
    };
    let mut t = ctx.lock_key(&argv[1]);
    let Some(l) = ctx.write::<List>(&mut t, &argv[1])? else {
        ctx.out.int(0);
        return Ok(());
    };
    let pivot = List::encoded(&argv[3]);
    let at = l.spans().position(|e| e == pivot);
    match at {
        Some(p) => {
            l.insert(p + usize::from(after), &argv[4], ctx.encodings().list);
            let n = l.len();
            ctx.emit_argv(argv);
            ctx.out.int(n as i64);
        }
        None => ctx.out.int(-1),
    }
    Ok(())
}

fn lpos(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let (mut rank, mut count, mut maxlen) = (1i64, None, 0usize);
    let mut a = Args::new(argv, 2);
    while let Some(w) = a.next() {
        if w.eq_ignore_ascii_case(b"rank") {
            rank = a.int()?;
            if rank == 0 {
                return Err(CommandError::err("RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list"));
            }
            if rank == i64::MIN {
                return Err(CommandError::err(
                    "value is out of range, value must between -9223372036854775807 and 9223372036854775807",
                ));
            }
        } else if w.eq_ignore_ascii_case(b"count") {
            count = Some(a.int_at_least(0, "COUNT can't be negative")? as usize);
        } else if w.eq_ignore_ascii_case(b"maxlen") {
            maxlen = a.int_at_least(0, "MAXLEN can't be negative")? as usize;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    let mut t = ctx.lock_key(&argv[1]);
    let l = ctx.read::<List>(&mut t, &argv[1])?;
    let mut found = Vec::new();
    if let Some(l) = l {
        let want = match count {
            Some(0) => usize::MAX,
            Some(c) => c,
            None => 1,
        };
        let limit = if maxlen == 0 {
            l.len()
        } else {
            maxlen.min(l.len())
        };
        let mut skip = rank.unsigned_abs() - 1;
        let len = l.len();
        let target = List::encoded(&argv[2]);
        // Elements compared as stored: nothing decoded.
        let positions: Box<dyn Iterator<Item = (usize, &[u8])>> = if rank > 0 {
            Box::new(l.spans().enumerate().take(limit))
        } else {
            Box::new(
                l.spans()
                    .rev()
                    .enumerate()
                    .take(limit)
                    .map(|(k, e)| (len - 1 - k, e)),
            )
        };
        for (i, e) in positions {
            if e == target {
                if skip > 0 {
                    skip -= 1;
                } else {
                    found.push(i);
                    if found.len() >= want {
                        break;
                    }
                }
            }
        }
    }
    match count {
        Some(_) => {
            ctx.out.array(found.len());
            found.iter().for_each(|&i| ctx.out.int(i as i64));
        }
        None => match found.first() {
            Some(&i) => ctx.out.int(i as i64),
            None => ctx.out.null(),
        },
    }
    Ok(())
}

fn lrange(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let (start, stop) = (int(&argv[2])?, int(&argv[3])?);
    let mut t = ctx.lock_key(&argv[1]);
    let Some(l) = ctx.read::<List>(&mut t, &argv[1])? else {
        ctx.out.array(0);
        return Ok(());
    };
    match clamp_range(start, stop, l.len()) {
        Some((s, e)) => {
            ctx.out.array(e - s + 1);
            for el in l.iter_from(s).take(e - s + 1) {
                ctx.out.bulk(&el);
            }
        }
        None => ctx.out.array(0),
    }
    Ok(())
}

fn lrem(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let count = int(&argv[2])?;
    let mut t = ctx.lock_key(&argv[1]);
    let Some(l) = ctx.write::<List>(&mut t, &argv[1])? else {
        ctx.out.int(0);
        return Ok(());
    };
    let target = &argv[3][..];
    let limit = if count == 0 {
        usize::MAX
    } else {
        count.unsigned_abs().min(usize::MAX as u64) as usize
    };
    let removed = l.remove_matching(target, limit, count < 0);
    if removed > 0 {
        ctx.remove_if_empty::<List>(&mut t, &argv[1]);
        ctx.emit_argv(argv);
    }
    ctx.out.int(removed as i64);
    Ok(())
}

fn lset(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut t = ctx.lock_key(&argv[1]);
    // The key before the index, as in Redis.
    let l = ctx
        .write::<List>(&mut t, &argv[1])?
        .ok_or(CommandError::NoSuchKey)?;
    let i =
        index(int(&argv[2])?, l.len()).ok_or_else(|| CommandError::err("index out of range"))?;
    l.set(i, &argv[3], ctx.encodings().list);
    ctx.emit_argv(argv);
    ctx.out.ok();
    Ok(())
}

fn ltrim(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let (start, stop) = (int(&argv[2])?, int(&argv[3])?);
    let mut t = ctx.lock_key(&argv[1]);
    let Some(l) = ctx.write::<List>(&mut t, &argv[1])? else {
        ctx.out.ok();
        return Ok(());
    };
    let before = l.len();
    match clamp_range(start, stop, l.len()) {
        Some((s, e)) => l.trim(s, e),
        None => l.clear(),
    }
    if l.len() != before {
        ctx.remove_if_empty::<List>(&mut t, &argv[1]);
        ctx.emit_argv(argv);
    } else {
        // Redis signals an LTRIM of an existing list even when it kept
        // everything (nothing to record, though).
        ctx.signal_unrecorded(argv);
    }
    ctx.out.ok();
    Ok(())
}

/// Pops from `src` and pushes onto `dst` atomically; the destination's
/// type is checked before anything moves. Returns the moved element.
pub fn move_element(
    ctx: &Ctx,
    src: &[u8],
    dst: &[u8],
    from: End,
    to: End,
) -> Result<Option<SmallBuf>, CommandError> {
    let limit = ctx.encodings().list;
    let mut locked = ctx.lock_keys([src, dst].into_iter());
    let db = ctx.db();
    {
        let ts = locked.table_for(db, src);
        if ctx.waited(ctx.write::<List>(ts, src))?.is_none() {
            return Ok(None);
        }
    }
    {
        let td = locked.table_for(db, dst);
        ctx.write::<List>(td, dst)?;
    }
    let ts = locked.table_for(db, src);
    let l = ctx.write::<List>(ts, src)?.expect("checked above");
    let e = pop(l, from).expect("stored lists are never empty");
    if src == dst {
        // A rotation: the list is never empty in between, so the key (and
        // its time to live) stays, as in Redis.
        push(l, to, e.as_bytes(), limit);
    } else {
        ctx.remove_if_empty::<List>(ts, src);
        let td = locked.table_for(db, dst);
        let d: &mut List = ctx.write_or_create(td, dst)?;
        push(d, to, e.as_bytes(), limit);
    }
    let word = |e: End| -> &'static [u8] {
        match e {
            End::Left => b"LEFT",
            End::Right => b"RIGHT",
        }
    };
    ctx.emit(&[b"LMOVE", src, dst, word(from), word(to)]);
    Ok(Some(e))
}

fn lmove(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let (from, to) = (End::parse(&argv[3])?, End::parse(&argv[4])?);
    match move_element(ctx, &argv[1], &argv[2], from, to)? {
        Some(e) => ctx.out.bulk(e.as_bytes()),
        None => ctx.out.null(),
    }
    Ok(())
}

fn rpoplpush(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    match move_element(ctx, &argv[1], &argv[2], End::Right, End::Left)? {
        Some(e) => ctx.out.bulk(e.as_bytes()),
        None => ctx.out.null(),
    }
    Ok(())
}

/// Parses `numkeys key... <LEFT|RIGHT> [COUNT n]` starting at `at`.
pub fn parse_mpop<'a, E: Copy>(
    argv: &'a [Bytes],
    at: usize,
    ends: &[(&str, E)],
) -> Result<(&'a [Bytes], E, usize), CommandError> {
    let n = match int(&argv[at]) {
        Ok(n) if n > 0 => n as usize,
        _ => return Err(CommandError::err("numkeys should be greater than 0")),
    };
    let keys = argv.get(at + 1..at + 1 + n).ok_or(CommandError::Syntax)?;
    let mut a = Args::new(argv, at + n);
    let w = a.value()?;
    let end = ends
        .iter()
        .find(|(name, _)| w.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, e)| *e)
        .ok_or(CommandError::Syntax)?;
    let mut count = 1;
    if a.eat("count") {
        count = a.int_at_least(1, "count should be greater than 0")? as usize;
    }
    a.finish()?;
    Ok((keys, end, count))
}

fn lmpop(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let (keys, end, count) = parse_mpop(argv, 1, &[("left", End::Left), ("right", End::Right)])?;
    if !mpop_first(ctx, keys, end, count)? {
        ctx.out.null_array();
    }
    Ok(())
}

/// Pops up to `count` elements from the first non-empty list among `keys`
/// and replies `[key, [elements]]`; false if every list is empty.
pub fn mpop_first(
    ctx: &mut Ctx,
    keys: &[Bytes],
    end: End,
    count: usize,
) -> Result<bool, CommandError> {
    let Some((key, popped)) = ctx.pop_first::<List, _>(keys, end.pop_name(), true, |l| {
        (0..count.min(l.len()))
            .filter_map(|_| pop(l, end))
            .collect()
    })?
    else {
        return Ok(false);
    };
    ctx.out.array(2);
    ctx.out.bulk(key);
    ctx.out.array(popped.len());
    popped.iter().for_each(|e| ctx.out.bulk(e.as_bytes()));
    Ok(true)
}

/// BLPOP and BRPOP: pops one element from the first non-empty list, or
/// blocks (`server::blocking`).
fn bpop(ctx: &mut Ctx, argv: &[Bytes], end: End) -> CmdResult {
    let deadline = block_deadline(&argv[argv.len() - 1])?;
    let keys = &argv[1..argv.len() - 1];
    match ctx.pop_first::<List, _>(keys, end.pop_name(), false, |l| {
        pop(l, end).into_iter().collect()
    })? {
        Some((key, popped)) => {
            ctx.out.array(2);
            ctx.out.bulk(key);
            ctx.out.bulk(popped[0].as_bytes());
        }
        None => ctx.block(keys, deadline, true),
    }
    Ok(())
}

fn blpop(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    bpop(ctx, argv, End::Left)
}

fn brpop(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    bpop(ctx, argv, End::Right)
}

fn bmove(ctx: &mut Ctx, argv: &[Bytes], from: End, to: End, timeout: &[u8]) -> CmdResult {
    let deadline = block_deadline(timeout)?;
    match move_element(ctx, &argv[1], &argv[2], from, to)? {
        Some(e) => ctx.out.bulk(e.as_bytes()),
        None => ctx.block(&argv[1..2], deadline, false),
    }
    Ok(())
}

fn blmove(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let (from, to) = (End::parse(&argv[3])?, End::parse(&argv[4])?);
    bmove(ctx, argv, from, to, &argv[5])
}

fn brpoplpush(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    bmove(ctx, argv, End::Right, End::Left, &argv[3])
}

fn blmpop(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let deadline = block_deadline(&argv[1])?;
    let (keys, end, count) = parse_mpop(argv, 2, &[("left", End::Left), ("right", End::Right)])?;
    if !mpop_first(ctx, keys, end, count)? {
        ctx.block(keys, deadline, true);
    }
    Ok(())
}
