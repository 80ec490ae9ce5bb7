//! The memory allocator of a guest component (feature `allocator`, on by default).
//!
//! A call into a journey allocates dozens of small blocks and frees them all before it returns:
//! the strings the host hands over, every key and string of the parsed JSON, the commands and
//! their payload text. wasi-libc's `malloc` (dlmalloc), which Rust's `System` allocator uses on
//! `wasm32-wasip2`, does general-purpose bookkeeping for each of them, and in a profile of the
//! onboarding journey that was about a sixth of the guest's time. This allocator serves small
//! blocks from free lists, one per size class: allocating pops a block (or carves one from a
//! chunk taken from `System`), freeing pushes it back. Larger or over-aligned blocks go to
//! `System` as before.
//!
//! Small blocks are never returned to `System`: a warm instance's next call reuses them, and the
//! host caps an instance's memory and retires it after a number of calls anyway.
//!
//! The first chunk is a static, zero-initialized array: part of the memory the component
//! declares, so a call that needs no more than that never grows memory (which, in a fresh
//! instance, costs the host two `mprotect`s: one to grow, one to reset the slot afterwards).
//!
//! Only on `wasm32` without the `atomics` feature, where a component has exactly one thread:
//! the free lists are plain cells. Natively (unit tests) the platform's allocator is used.
//! A component that wants its own allocator turns this off with `default-features = false`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// The alignment every small block has, and the step between size classes.
const GRAIN: usize = 16;
/// The largest block served from the free lists: a `BTreeMap<String, Value>` node (a parsed
/// JSON object) is about 630 bytes.
const MAX_SMALL: usize = 1024;
/// One free list per multiple of [`GRAIN`] up to [`MAX_SMALL`].
const CLASSES: usize = MAX_SMALL / GRAIN;
/// Bytes taken from `System` at a time to carve small blocks from.
const CHUNK: usize = 64 << 10;

/// The guest's global allocator: free lists for small blocks, `System` for the rest.
pub(crate) struct SizeClasses {
    state: UnsafeCell<State>,
}

struct State {
    /// The head of each class's free list; a free block holds the next block's address.
    free: [*mut u8; CLASSES],
    /// The unused rest of the current chunk (null until the first allocation).
    chunk: *mut u8,
    chunk_left: usize,
    /// The first chunk, carved before any is taken from `System`.
    first: FirstChunk,
}

/// The first chunk's bytes, aligned for blocks.
#[repr(C, align(16))]
struct FirstChunk([u8; CHUNK]);

// SAFETY: only where a component has one thread (see the module docs), so the state is never
// touched from two threads. Natively it is not `Sync`, and the unit tests use it on one thread.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
unsafe impl Sync for SizeClasses {}

impl SizeClasses {
    /// An allocator with empty free lists. It must not move once it has allocated (its
    /// blocks may be in its first chunk): it is meant for a `static`.
    pub(crate) const fn new() -> SizeClasses {
        SizeClasses {
            state: UnsafeCell::new(State {
                free: [ptr::null_mut(); CLASSES],
                chunk: ptr::null_mut(),
                chunk_left: 0,
                first: FirstChunk([0; CHUNK]),
            }),
        }
    }
}

/// The size class of `layout`, if it is small: a function of the layout alone, so `alloc` and
/// `dealloc` of one block always agree.
#[inline]
fn class(layout: Layout) -> Option<usize> {
    let size = layout.size();
    if size == 0 || size > MAX_SMALL || layout.align() > GRAIN {
        return None;
    }
    Some((size - 1) / GRAIN)
}

impl State {
    /// A block of class `class`: from its free list, else from the chunk, else null.
    #[inline]
    unsafe fn take(&mut self, class: usize) -> *mut u8 {
        let head = self.free[class];
        if !head.is_null() {
            // SAFETY: a block on a free list is at least GRAIN bytes, aligned, and holds the
            // next block's address (written by `give`).
            self.free[class] = unsafe { head.cast::<*mut u8>().read() };
            return head;
        }
        let size = (class + 1) * GRAIN;
        if self.chunk.is_null() {
            self.chunk = self.first.0.as_mut_ptr();
            self.chunk_left = CHUNK;
        }
        if self.chunk_left < size {
            // The rest of the old chunk (less than one block of this class) is dropped: the
            // waste is bounded by MAX_SMALL per chunk.
            // SAFETY: a valid, non-zero layout.
            let chunk = unsafe { System.alloc(Layout::from_size_align_unchecked(CHUNK, GRAIN)) };
            if chunk.is_null() {
                return chunk;
            }
            self.chunk = chunk;
            self.chunk_left = CHUNK;
        }
        let block = self.chunk;
        // SAFETY: `size <= chunk_left`, so the block and the new chunk start are inside it.
        self.chunk = unsafe { self.chunk.add(size) };
        self.chunk_left -= size;
        block
    }

    /// Puts a block of class `class` back on its free list.
    #[inline]
    unsafe fn give(&mut self, class: usize, block: *mut u8) {
        // SAFETY: the block came from `take` for this class: GRAIN-aligned, at least GRAIN
        // bytes, and no longer used by the program.
        unsafe { block.cast::<*mut u8>().write(self.free[class]) };
        self.free[class] = block;
    }
}

// SAFETY: small blocks are GRAIN-aligned (chunks are, and every class size is a multiple of
// GRAIN) and at least as large as their class's sizes; a block is on at most one free list, and
// only while it is not allocated. Everything else is `System`'s.
unsafe impl GlobalAlloc for SizeClasses {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match class(layout) {
            // SAFETY: one thread (see the `Sync` impl), and no reentrancy: `take` calls
            // `System`, never this allocator.
            Some(class) => unsafe { (*self.state.get()).take(class) },
            // SAFETY: the caller's layout, passed on.
            None => unsafe { System.alloc(layout) },
        }
    }

    #[inline]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match class(layout) {
            // SAFETY: as in `alloc`; `block` was allocated with `layout`, so from this class.
            Some(class) => unsafe { (*self.state.get()).give(class, block) },
            // SAFETY: allocated by `System` with this layout.
            None => unsafe { System.dealloc(block, layout) },
        }
    }

    #[inline]
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class(layout), class(new_layout)) {
            // Still fits its block.
            (Some(old), Some(new)) if old == new => block,
            // SAFETY: both `System`'s, as the caller's contract requires.
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            _ => {
                // SAFETY: a new block of the new layout, the common prefix copied, the old
                // block freed with the layout it was allocated with.
                unsafe {
                    let moved = self.alloc(new_layout);
                    if !moved.is_null() {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                    moved
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_class_depends_on_size_and_alignment_only() {
        assert_eq!(class(Layout::from_size_align(1, 1).unwrap()), Some(0));
        assert_eq!(class(Layout::from_size_align(16, 8).unwrap()), Some(0));
        assert_eq!(class(Layout::from_size_align(17, 1).unwrap()), Some(1));
        assert_eq!(
            class(Layout::from_size_align(MAX_SMALL, 16).unwrap()),
            Some(CLASSES - 1)
        );
        assert_eq!(
            class(Layout::from_size_align(MAX_SMALL + 1, 1).unwrap()),
            None
        );
        assert_eq!(class(Layout::from_size_align(8, 32).unwrap()), None);
        assert_eq!(class(Layout::from_size_align(0, 1).unwrap()), None);
    }

    #[test]
    fn freed_blocks_are_reused_and_blocks_never_overlap() {
        let heap = Box::new(SizeClasses::new());
        let small = Layout::from_size_align(24, 8).unwrap();
        let large = Layout::from_size_align(4096, 8).unwrap();
        unsafe {
            let blocks: Vec<*mut u8> = (0..10_000).map(|_| heap.alloc(small)).collect();
            for (i, &block) in blocks.iter().enumerate() {
                assert!(!block.is_null());
                assert_eq!(block as usize % GRAIN, 0);
                block.write_bytes(i as u8, small.size());
            }
            let mut sorted = blocks.clone();
            sorted.sort();
            assert!(sorted
                .windows(2)
                .all(|w| w[1] as usize - w[0] as usize >= 32));
            for (i, &block) in blocks.iter().enumerate() {
                assert!(std::slice::from_raw_parts(block, small.size())
                    .iter()
                    .all(|&b| b == i as u8));
            }
            let last = blocks[blocks.len() - 1];
            heap.dealloc(last, small);
            assert_eq!(heap.alloc(small), last, "the freed block comes back first");

            let big = heap.alloc(large);
            big.write_bytes(7, large.size());
            let grown = heap.realloc(big, large, 8192);
            assert_eq!(*grown.add(4095), 7);
            heap.dealloc(grown, Layout::from_size_align(8192, 8).unwrap());

            // Growing out of the small classes keeps the contents.
            let grown = heap.realloc(blocks[0], small, 1000);
            assert_eq!(*grown, 0);
            let shrunk = heap.realloc(grown, Layout::from_size_align(1000, 8).unwrap(), 20);
            assert_eq!(*shrunk, 0);
        }
    }
}
