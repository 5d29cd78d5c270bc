//! One bucket: 8 tophash bytes, an overflow pointer, 8 keys, 8 values (Go's `bmap`, with the
//! overflow pointer moved from the end to the header), and the raw allocation of bucket arrays
//! and overflow buckets.
//!
//! Keys are grouped together and values together (Go's layout), so a lookup that walks the
//! tophash bytes and then the keys touches neither the values nor padding between key/value
//! pairs. The overflow pointer sits right after the tophash bytes (a 16-byte header when keys
//! are 8-aligned), so a miss, or a walk down an overflow chain, reads the bucket's first cache
//! line only; at Go's end-of-bucket position every miss in a full bucket read its last line
//! too. Go's field order is an implementation detail of its compiler-generated `bmap`; the
//! slot count, the tophash states and their semantics are what this engine keeps.
//!
//! All memory comes zeroed (from the allocator, or straight from the OS for arrays of 256 KiB and
//! more, see `MAP_ARRAY_BYTES`): a zeroed bucket is a valid empty bucket
//! (every tophash `EMPTY_REST`, no overflow), so a fresh array needs no initialisation pass and
//! large arrays stay untouched pages until used.

use std::alloc::{self, Layout};
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};

use super::tophash::{BUCKET_CNT, Group, is_evacuated_mark};

#[repr(C)]
pub(crate) struct Bucket<K, V> {
    /// One state or tophash byte per slot; see `tophash.rs`.
    pub(crate) tophash: [u8; BUCKET_CNT],
    /// Next bucket of the chain, null at its end. Owned by this bucket. In the header, on the
    /// tophash bytes' cache line, because every probe that does not stop in this bucket reads it.
    pub(crate) overflow: *mut Bucket<K, V>,
    /// Initialised exactly where `tophash[i] >= MIN_TOP_HASH`.
    pub(crate) keys: [MaybeUninit<K>; BUCKET_CNT],
    /// Initialised exactly where `tophash[i] >= MIN_TOP_HASH`.
    pub(crate) values: [MaybeUninit<V>; BUCKET_CNT],
}

impl<K, V> Bucket<K, V> {
    #[inline]
    pub(crate) fn group(&self) -> Group {
        Group::load(&self.tophash)
    }

    /// Go's `evacuated(b)`: the first slot carries an evacuation mark.
    #[inline]
    pub(crate) fn evacuated(&self) -> bool {
        is_evacuated_mark(self.tophash[0])
    }

    /// Drops the live entries of this one bucket (not its chain) and marks their slots with
    /// `mark`.
    ///
    /// # Safety
    /// Slots with tophash `>= MIN_TOP_HASH` must hold initialised keys and values that nobody
    /// else owns.
    pub(crate) unsafe fn drop_entries(&mut self, mark: u8) {
        for i in self.group().match_full() {
            self.tophash[i] = mark;
            // SAFETY: a full slot holds an initialised key and value (caller's contract); the
            // tophash is overwritten first, so a panicking drop cannot cause a second drop.
            unsafe {
                self.keys[i].assume_init_drop();
                self.values[i].assume_init_drop();
            }
        }
    }
}

/// Asks the CPU to start loading the cache line at `addr` (a hint: it never faults and has no
/// architectural effect, whatever the address). Used where the engine knows which bucket it will
/// read next while it waits on another cache miss, so the two misses overlap.
#[inline(always)]
pub(crate) fn prefetch<T>(addr: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: `prefetcht0` reads nothing architecturally and cannot fault, for any address;
        // SSE, which provides it, is part of the x86_64 baseline.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(addr.cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// Size in bytes of one bucket, as counted by `stats().bytes_allocated`.
pub(crate) const fn bucket_size<K, V>() -> usize {
    std::mem::size_of::<Bucket<K, V>>()
}

fn array_layout<K, V>(len: usize) -> Layout {
    match Layout::array::<Bucket<K, V>>(len) {
        Ok(layout) => layout,
        Err(_) => panic!("mapcache engine: bucket array of {len} buckets overflows isize"),
    }
}

/// Allocates `len` zeroed (empty) buckets.
pub(crate) fn alloc_array<K, V>(len: usize) -> *mut Bucket<K, V> {
    debug_assert!(len > 0);
    let layout = array_layout::<K, V>(len);
    if layout.size() >= OFF_THREAD_FREE_BYTES {
        // Start the helper thread before the first array it will free exists: now the heap is
        // as small as it will be when that array is freed, and the spawn's allocations are cheap.
        let _ = freer();
    }
    // SAFETY: the layout is non-zero sized (a bucket holds at least its tophash bytes).
    let ptr = unsafe { raw_alloc_zeroed(layout) };
    if ptr.is_null() {
        alloc::handle_alloc_error(layout);
    }
    ptr.cast()
}

/// Frees an array from [`alloc_array`] without touching its contents.
///
/// # Safety
/// `ptr` came from `alloc_array::<K, V>(len)` with this `len`, and is not used afterwards. Its
/// entries and overflow chains must have been dropped or moved out already.
pub(crate) unsafe fn free_array<K, V>(ptr: *mut Bucket<K, V>, len: usize) {
    // SAFETY: same pointer and layout as the allocation (caller's contract).
    unsafe { raw_free(ptr.cast(), array_layout::<K, V>(len)) }
}

/// Arrays at least this large are mapped straight from the OS (where [`os`] exists). glibc's
/// `calloc` serves requests below its mmap threshold from the heap, and that threshold rises
/// (up to 32 MiB) each time a mapped block is freed, so after a few doublings the next array of
/// up to 32 MiB came from reused heap memory that `calloc` had to zero with `memset` inside the
/// insert that started the grow: 3.9 ms of CPU for the 19 MiB array of a 2^17-bucket map, the
/// worst single insert while growing to 1e7. Fresh anonymous pages are zero already and are
/// faulted in one at a time as evacuation first writes them.
///
/// 256 KiB, about glibc's own initial mmap threshold (128 KiB), so that an array glibc would
/// have mapped itself is mapped here instead and can be unmapped on the helper thread (see
/// `OFF_THREAD_FREE_BYTES`).
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
const MAP_ARRAY_BYTES: usize = 256 << 10;

/// `true` when an array of this layout is mapped from the OS rather than the allocator.
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
#[inline]
fn mapped(layout: Layout) -> bool {
    layout.size() >= MAP_ARRAY_BYTES && layout.align() <= 4096
}

/// Zeroed memory for `layout`, null on failure.
///
/// # Safety
/// `layout` has a non-zero size.
unsafe fn raw_alloc_zeroed(layout: Layout) -> *mut u8 {
    #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
    if mapped(layout) {
        return os::map_zeroed(layout.size());
    }
    // SAFETY: non-zero size (caller's contract).
    unsafe { alloc::alloc_zeroed(layout) }
}

/// Frees memory from [`raw_alloc_zeroed`].
///
/// # Safety
/// `ptr` came from `raw_alloc_zeroed(layout)` with this `layout` and is not used afterwards.
unsafe fn raw_free(ptr: *mut u8, layout: Layout) {
    #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
    if mapped(layout) {
        // SAFETY: a mapping of exactly `layout.size()` bytes at `ptr` (same `mapped` decision).
        unsafe { os::unmap(ptr, layout.size()) };
        return;
    }
    // SAFETY: same pointer and layout as the allocation (caller's contract).
    unsafe { alloc::dealloc(ptr, layout) }
}

/// Process-wide: back new large bucket arrays with transparent huge pages. Off by default.
static HUGE_PAGES: AtomicBool = AtomicBool::new(false);

/// See [`super::set_huge_pages`].
pub(crate) fn set_huge_pages(enabled: bool) {
    HUGE_PAGES.store(enabled, Ordering::Relaxed);
}

/// See [`super::huge_pages`].
pub(crate) fn huge_pages() -> bool {
    HUGE_PAGES.load(Ordering::Relaxed)
}

/// Anonymous private mappings for large bucket arrays.
#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
mod os {
    use libc::{
        MADV_HUGEPAGE, MADV_POPULATE_WRITE, MAP_ANONYMOUS, MAP_FAILED, MAP_PRIVATE, PROT_READ,
        PROT_WRITE, madvise, mmap, munmap,
    };

    /// The size (and alignment) of a transparent huge page (a PMD mapping) on x86_64 and on
    /// aarch64 with 4 KiB base pages.
    pub(super) const HUGE_PAGE: usize = 2 << 20;

    /// With [`huge_pages`](super::huge_pages) on, mappings at least this large start on a
    /// [`HUGE_PAGE`] boundary and are advised `MADV_HUGEPAGE`, so the kernel backs them with
    /// 2 MiB pages where it can (with THP in its `madvise` mode, the common distribution
    /// default, nothing else gets them). See `set_huge_pages` for what that buys and costs.
    pub(super) const HUGE_ARRAY_BYTES: usize = 4 << 20;

    const PAGE: usize = 4096;

    fn map(len: usize) -> *mut u8 {
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing aliases
        // nothing; `MAP_FAILED` (-1) is turned into null.
        let ptr = unsafe {
            mmap(
                std::ptr::null_mut(),
                len,
                PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == MAP_FAILED { std::ptr::null_mut() } else { ptr.cast() }
    }

    /// `len` bytes of fresh zero pages (page-aligned; with huge pages on and from
    /// [`HUGE_ARRAY_BYTES`] on, [`HUGE_PAGE`]-aligned and advised `MADV_HUGEPAGE`), null on
    /// failure.
    pub(super) fn map_zeroed(len: usize) -> *mut u8 {
        if len < HUGE_ARRAY_BYTES || !super::huge_pages() {
            return map(len);
        }
        // Over-allocate by one huge page and unmap the unaligned head and the tail, leaving
        // exactly `len` bytes (rounded up to whole pages) from a huge-page boundary: `unmap`
        // then frees it with the same `len` as any other mapping.
        let pages_len = len.next_multiple_of(PAGE);
        let raw = map(pages_len + HUGE_PAGE);
        if raw.is_null() {
            return raw;
        }
        let head = raw.align_offset(HUGE_PAGE);
        let tail = HUGE_PAGE - head;
        // SAFETY: `raw .. raw + pages_len + HUGE_PAGE` is our fresh mapping; `head` and `tail`
        // are page multiples (both addresses are page-aligned), so the two calls unmap whole
        // pages at its two ends and keep `raw + head .. raw + head + pages_len`.
        let ptr = unsafe {
            if head > 0 {
                munmap(raw.cast(), head);
            }
            let ptr = raw.add(head);
            if tail > 0 {
                munmap(ptr.add(pages_len).cast(), tail);
            }
            ptr
        };
        // SAFETY: advice on our own mapping; it changes how the kernel backs the pages, never
        // their contents (still zero). A refusal (no THP in this kernel) leaves 4 KiB pages.
        let rc = unsafe { madvise(ptr.cast(), pages_len, MADV_HUGEPAGE) };
        let _ = rc;
        ptr
    }

    /// Populates every page of a mapping from [`map_zeroed`] as a write would
    /// (`MADV_POPULATE_WRITE`): allocated and zeroed now, in one call. `false` if the kernel
    /// refused (older than 5.14, or out of memory); the mapping is then unchanged or partly
    /// populated, zero either way.
    ///
    /// # Safety
    /// `ptr` and `len` are exactly those of one live mapping from `map_zeroed`.
    pub(super) unsafe fn populate(ptr: *mut u8, len: usize) -> bool {
        if cfg!(miri) {
            return false; // Miri has no `madvise`: the write per page stands in for it
        }
        // SAFETY: advice on that page-aligned, writable mapping (caller's contract); populating
        // pages changes no byte of it (fresh anonymous pages read as zero before and after).
        unsafe { madvise(ptr.cast(), len, MADV_POPULATE_WRITE) == 0 }
    }

    /// Unmaps a mapping from [`map_zeroed`].
    ///
    /// # Safety
    /// `ptr` and `len` are exactly those of one live mapping from `map_zeroed`, not used again.
    pub(super) unsafe fn unmap(ptr: *mut u8, len: usize) {
        // SAFETY: caller's contract.
        let rc = unsafe { munmap(ptr.cast(), len) };
        debug_assert_eq!(rc, 0, "munmap of a bucket array failed");
    }
}

/// Arrays at least this large are freed on the helper thread by [`free_array_off_thread`].
///
/// The same 256 KiB as `MAP_ARRAY_BYTES`: every mapped array is unmapped off the writer. A cache
/// node's 16 shards of ~6k keys each double together (uniform keys), each from a 660 KB array;
/// with 2 MiB here those old arrays came from glibc's `calloc`, which had mapped them itself,
/// and its `free` unmapped each inside the write that ended its shard's evacuation: 16
/// `munmap`s of 0.2–0.6 ms (`perf trace`) on the connection thread within a few milliseconds,
/// each one stalling every client of that thread.
const OFF_THREAD_FREE_BYTES: usize = 256 << 10;

/// Arrays at least this large are followed by a trim when freed with `trim` (see
/// [`free_array_off_thread`]).
const TRIM_AFTER_BYTES: usize = 2 << 20;

/// Emptied arrays waiting for the helper thread. When the helper is this far behind, the next
/// array is freed inline instead (correct, only slower for that one write).
const FREER_QUEUE: usize = 64;

/// Work for the helper thread.
enum Job {
    Free(FreeJob),
    Prepare(Arc<PrepareJob>),
}

/// An emptied bucket array on its way to the allocator, and whether to trim after freeing it.
struct FreeJob {
    ptr: *mut u8,
    layout: Layout,
    trim: bool,
}

// SAFETY: the array holds no entries (only tophash bytes and null overflow pointers) and no
// one else refers to it; the global allocator and `munmap` may free memory from any thread.
unsafe impl Send for FreeJob {}

impl FreeJob {
    /// Frees the array, then trims if asked.
    ///
    /// # Safety
    /// `ptr` came from `raw_alloc_zeroed(layout)`, nobody uses it any more, and the job runs once.
    unsafe fn run(self) {
        // SAFETY: caller's contract.
        unsafe { raw_free(self.ptr, self.layout) };
        if self.trim {
            release_free_memory();
        }
    }
}

/// The process-wide helper thread (`mapcache-free`) that frees large emptied arrays, or `None`
/// when no thread could be spawned. Started once, by the first allocation of an array it may
/// later free (see [`alloc_array`]), and parked on its queue ever after.
///
/// One long-lived thread, not a thread per array: spawning a thread allocates (its handle, its
/// packet, the closure), and at the end of a large evacuation glibc's unsorted free list holds
/// tens of thousands of just-freed old overflow buckets, which the first allocation of an
/// unusual size sorts through (up to 10 000 chunks, a cache miss each). A spawn per array cost
/// the insert that ended the doubling to 2^21 buckets 1.8–2.0 ms of CPU, nearly all of it in
/// `_int_malloc`'s unsorted-bin loop (perf, `cpu-clock`); a send on the bounded queue allocates
/// nothing.
///
/// The same thread prepares the next array of a map about to double ([`prepare_array`]).
fn freer() -> Option<&'static SyncSender<Job>> {
    static FREER: OnceLock<Option<SyncSender<Job>>> = OnceLock::new();
    FREER
        .get_or_init(|| {
            let (sender, receiver) = sync_channel::<Job>(FREER_QUEUE);
            let spawned =
                std::thread::Builder::new().name("mapcache-free".into()).spawn(move || {
                    for job in receiver {
                        match job {
                            // SAFETY: each free job was sent once by `free_array_off_thread`,
                            // whose caller gave up the array (see its contract).
                            Job::Free(job) => unsafe { job.run() },
                            Job::Prepare(job) => job.run(),
                        }
                    }
                });
            spawned.ok().map(|_| sender)
        })
        .as_ref()
}

/// As [`free_array`], but a large array goes back to the allocator on the helper thread
/// ([`freer`]). The end of an evacuation frees the old array in the middle of some write, and
/// unmapping it costs about 0.1–0.4 ms per MiB (15–20 ms for the 144 MiB old array of a
/// 2^21-bucket map); off the writer's thread it no longer lands on one insert. The writer only
/// queues the array: the memory is returned to the OS shortly after the evacuation ends (as
/// soon as the helper runs), not inside the write that ended it.
///
/// With `trim` (the end of a shrink or a compaction, which free many overflow buckets) the
/// helper thread also returns the allocator's free pages to the OS: the overflow buckets are
/// small heap blocks that glibc keeps after `free`, so without a trim the RSS after an online
/// shrink of 1e7 entries stayed 1.7x a fresh map's. Only large arrays are trimmed after: a
/// trim walks the heap holding the allocator's arena lock, which is worth it when megabytes of
/// overflow buckets came free (about one per five buckets at Go's load factor), not after
/// every small compaction. Falls back to freeing inline, without a trim, if there is no helper
/// thread or its queue is full.
///
/// # Safety
/// As [`free_array`].
pub(crate) unsafe fn free_array_off_thread<K, V>(ptr: *mut Bucket<K, V>, len: usize, trim: bool) {
    let layout = array_layout::<K, V>(len);
    if layout.size() < OFF_THREAD_FREE_BYTES {
        // SAFETY: forwarded contract.
        unsafe { free_array(ptr, len) };
        return;
    }
    let trim = trim && layout.size() >= TRIM_AFTER_BYTES;
    let job = FreeJob { ptr: ptr.cast(), layout, trim };
    let refused = match freer() {
        Some(sender) => match sender.try_send(Job::Free(job)) {
            Ok(()) => return,
            Err(
                TrySendError::Full(Job::Free(job)) | TrySendError::Disconnected(Job::Free(job)),
            ) => job,
            Err(_) => unreachable!("the job sent was a free job"),
        },
        None => job,
    };
    // SAFETY: the job was not queued, so it is still ours to free, once.
    unsafe { raw_free(refused.ptr, refused.layout) };
}

/// A bucket array allocated and faulted in on the helper thread, ahead of the doubling that
/// will use it ([`prepare_array`]). Dropping the handle gives the array up: freed at once when
/// it is ready, by the helper when it is still being prepared.
pub(crate) struct NextArray<K, V> {
    job: Arc<PrepareJob>,
    marker: PhantomData<*mut Bucket<K, V>>,
}

// SAFETY: the handle owns no entries, only (through the job's mutex) an empty array that no one
// else uses; it is as `Send`/`Sync` as the table that holds it.
unsafe impl<K: Send, V: Send> Send for NextArray<K, V> {}
// SAFETY: as above; `&NextArray` reads nothing but the job's state, under its mutex.
unsafe impl<K: Sync, V: Sync> Sync for NextArray<K, V> {}

/// Where a prepared array is. Ownership of the memory moves with the state, under the mutex.
enum Prepared {
    /// Queued or being faulted in; the helper owns whatever it has allocated so far.
    Pending,
    /// Ready: the memory (from `raw_alloc_zeroed(layout)`, all zero, every page touched) now
    /// belongs to the handle.
    Ready(*mut u8),
    /// The handle gave it up while pending: the helper frees what it allocated (or skips the job).
    Abandoned,
    /// The handle took the memory, or freed it.
    Gone,
}

struct PrepareJob {
    layout: Layout,
    state: Mutex<Prepared>,
}

// SAFETY: the pointer in `Ready` is an allocation that nobody refers to but the state itself;
// whoever takes it out under the mutex owns it. Memory from `raw_alloc_zeroed` may be freed on
// any thread.
unsafe impl Send for PrepareJob {}
// SAFETY: all access to the state goes through the mutex.
unsafe impl Sync for PrepareJob {}

impl PrepareJob {
    fn state(&self) -> std::sync::MutexGuard<'_, Prepared> {
        // A panic while the lock was held cannot leave the state half-updated (each update is
        // one assignment), so a poisoned lock is used as it is.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// On the helper thread: allocate, touch every page, hand over (or free, if abandoned).
    fn run(&self) {
        if matches!(*self.state(), Prepared::Abandoned) {
            return;
        }
        // SAFETY: bucket arrays have a non-zero size.
        let ptr = unsafe { raw_alloc_zeroed(self.layout) };
        if ptr.is_null() {
            // Out of memory here: leave it to the doubling, which allocates (and reports) itself.
            let mut state = self.state();
            if matches!(*state, Prepared::Pending) {
                *state = Prepared::Gone;
            }
            return;
        }
        // SAFETY: fresh from `raw_alloc_zeroed(self.layout)` above, not yet shared.
        unsafe { fault_in(ptr, self.layout) };
        let mut state = self.state();
        if matches!(*state, Prepared::Pending) {
            *state = Prepared::Ready(ptr);
        } else {
            drop(state);
            // SAFETY: the handle gave the array up before it was handed over: still ours alone.
            unsafe { raw_free(ptr, self.layout) };
        }
    }
}

/// Faults in every page of a fresh zeroed allocation from `raw_alloc_zeroed(layout)`, so that
/// the writes of an evacuation into it do not fault. A mapped array asks the kernel to populate
/// the whole range in one call (`MADV_POPULATE_WRITE`, Linux 5.14+: 41 MB in 18–21 ms of CPU on
/// the benchmark VM, against 27–29 ms for a write per page, which takes a fault per page); where
/// that is refused, and for heap memory, one write per page.
///
/// # Safety
/// `ptr` came from `raw_alloc_zeroed(layout)`, is live, and no other thread uses it yet.
unsafe fn fault_in(ptr: *mut u8, layout: Layout) {
    #[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
    // SAFETY: a mapped layout means `ptr` is a whole mapping from `os::map_zeroed` of that size.
    if mapped(layout) && unsafe { os::populate(ptr, layout.size()) } {
        return;
    }
    // SAFETY: forwarded contract; all `layout.size()` bytes are ours and zero.
    unsafe { touch_pages(ptr, layout.size()) };
}

/// Faults in every page of a fresh zeroed allocation by writing a zero into it (no change to its
/// contents).
///
/// # Safety
/// `ptr .. ptr + len` is a live, zeroed allocation that no other thread uses yet.
unsafe fn touch_pages(ptr: *mut u8, len: usize) {
    const PAGE: usize = 4096;
    let mut offset = 0;
    while offset < len {
        // SAFETY: `offset < len`, inside the allocation, which this thread owns exclusively
        // until it is handed over; the byte is zero already. Volatile, so the store is not
        // dropped as redundant.
        unsafe { ptr.add(offset).write_volatile(0) };
        offset += PAGE;
    }
}

/// Starts preparing an empty array of `len` buckets on the helper thread: allocated there and
/// every page faulted in, so that the doubling that later takes it ([`NextArray::take`]) and the
/// evacuation writes into it pay no page faults. `None` when there is no helper thread or its
/// queue is full.
///
/// Why: on Linux a fresh array's pages fault in one by one as evacuation first writes them, and
/// evacuation writes at random places, so most of a large array's pages fault within the first
/// few hundred writes of a doubling (a page fault costs 2–3 µs on the benchmark VM, with
/// outliers up to 1 ms). A cache node's shards double together under uniform keys: 16 arrays of
/// 1.3 MB faulted in by the connection thread within a few milliseconds.
pub(crate) fn prepare_array<K, V>(len: usize) -> Option<NextArray<K, V>> {
    let job = Arc::new(PrepareJob {
        layout: array_layout::<K, V>(len),
        state: Mutex::new(Prepared::Pending),
    });
    let sender = freer()?;
    sender.try_send(Job::Prepare(job.clone())).ok()?;
    Some(NextArray { job, marker: PhantomData })
}

impl<K, V> NextArray<K, V> {
    /// Bytes of the array (counted in `bytes_allocated` from the request on).
    pub(crate) fn bytes(&self) -> usize {
        self.job.layout.size()
    }

    /// Whether the helper has finished preparing it.
    pub(crate) fn is_ready(&self) -> bool {
        matches!(*self.job.state(), Prepared::Ready(_))
    }

    /// The prepared array, if it is ready: zeroed (all `EMPTY_REST`), `len` buckets as asked,
    /// owned by the caller from now on, freed with `free_array`/`free_array_off_thread`. `None`
    /// when it is not ready yet (the helper frees it when done) or could not be allocated.
    pub(crate) fn take(self) -> Option<*mut Bucket<K, V>> {
        self.claim().map(|ptr| ptr.cast())
    }

    /// Ends the handle's interest: the ready array's memory, or `None` after marking a pending
    /// one abandoned (the helper then frees it). Later calls return `None`.
    fn claim(&self) -> Option<*mut u8> {
        let mut state = self.job.state();
        match std::mem::replace(&mut *state, Prepared::Gone) {
            Prepared::Ready(ptr) => Some(ptr),
            Prepared::Pending => {
                *state = Prepared::Abandoned;
                None
            }
            Prepared::Abandoned | Prepared::Gone => None,
        }
    }
}

impl<K, V> Drop for NextArray<K, V> {
    fn drop(&mut self) {
        if let Some(ptr) = self.claim() {
            let len = self.job.layout.size() / bucket_size::<K, V>();
            // SAFETY: the ready array came from `raw_alloc_zeroed` with the layout of
            // `array_layout::<K, V>(len)`, holds no entries, and was just taken out of the
            // state, so nobody else can reach it.
            unsafe { free_array_off_thread::<K, V>(ptr.cast(), len, false) };
        }
    }
}

/// Returns the C allocator's free pages to the OS (glibc's `malloc_trim(0)`: every arena, and
/// free pages inside the heap too, not only its top). A no-op on other platforms, whose
/// allocators either return memory on their own or have no such call.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `malloc_trim` takes the arena locks itself and may be called from any thread
        // at any time; it only releases pages that hold no allocated block.
        unsafe { libc::malloc_trim(0) };
    }
}

/// Allocates one zeroed (empty) overflow bucket.
pub(crate) fn alloc_overflow<K, V>() -> *mut Bucket<K, V> {
    alloc_array(1)
}

/// Frees one overflow bucket from [`alloc_overflow`] without touching its contents.
///
/// # Safety
/// As [`free_array`] with `len == 1`.
pub(crate) unsafe fn free_overflow<K, V>(ptr: *mut Bucket<K, V>) {
    // SAFETY: forwarded contract.
    unsafe { free_array(ptr, 1) }
}

/// `true` when dropping a `K` or a `V` runs code. When neither does, dropping a table only has
/// to free its overflow buckets and arrays, not visit every slot.
#[inline]
pub(crate) const fn entries_need_drop<K, V>() -> bool {
    std::mem::needs_drop::<K>() || std::mem::needs_drop::<V>()
}

/// Drops every live entry of the chain starting at `head` and frees its overflow buckets
/// (not `head` itself, which lives in an array). When the entries have no drop glue, only the
/// overflow buckets are visited, and the slots of `head` are left as they are (callers zero or
/// free the array).
///
/// # Safety
/// `head` points to a valid bucket whose chain this call may consume; full slots hold owned,
/// initialised entries.
pub(crate) unsafe fn drop_chain<K, V>(head: *mut Bucket<K, V>) {
    // SAFETY: `head` is valid (caller's contract); each overflow pointer is owned by the
    // bucket before it, so it is freed exactly once, after its entries are dropped.
    unsafe {
        let mut next = (*head).overflow;
        (*head).overflow = ptr::null_mut();
        if entries_need_drop::<K, V>() {
            (*head).drop_entries(super::tophash::EMPTY_REST);
        }
        while !next.is_null() {
            let b = next;
            next = (*b).overflow;
            if entries_need_drop::<K, V>() {
                (*b).drop_entries(super::tophash::EMPTY_REST);
            }
            free_overflow(b);
        }
    }
}

#[cfg(all(test, target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
mod tests {
    use super::*;

    /// How many of the pages of `len` bytes at `ptr` are resident (`mincore`).
    fn resident_pages(ptr: *mut u8, len: usize) -> usize {
        let mut pages = vec![0u8; len.div_ceil(4096)];
        // SAFETY: `ptr .. ptr + len` is one live page-aligned mapping; `pages` has a byte per page.
        let rc = unsafe { libc::mincore(ptr.cast(), len, pages.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
        pages.iter().filter(|&&p| p & 1 == 1).count()
    }

    /// The running kernel's (major, minor) version, from `/proc/sys/kernel/osrelease`.
    fn kernel_version() -> (u32, u32) {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
        let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
        let mut next = || parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        (next(), next())
    }

    /// A prepared array is resident in full once `fault_in` returns, and still all zero; on a
    /// kernel that has `MADV_POPULATE_WRITE` (5.14+) that is the one-call path, not the fallback
    /// (which would make every page resident too).
    #[test]
    fn fault_in_makes_every_page_of_a_mapped_array_resident_and_leaves_it_zero() {
        let layout = Layout::from_size_align(MAP_ARRAY_BYTES * 4 + 100, 8).expect("layout");
        assert!(mapped(layout));
        let pages = layout.size().div_ceil(4096);
        for path in ["fault_in", "populate"] {
            // SAFETY: non-zero size.
            let ptr = unsafe { raw_alloc_zeroed(layout) };
            assert!(!ptr.is_null());
            assert!(
                resident_pages(ptr, layout.size()) < pages,
                "a fresh mapping starts unpopulated"
            );
            if path == "fault_in" {
                // SAFETY: fresh from `raw_alloc_zeroed(layout)`, used by this thread alone.
                unsafe { fault_in(ptr, layout) };
            } else {
                // SAFETY: a whole mapping from `map_zeroed` (the layout is mapped).
                let populated = unsafe { os::populate(ptr, layout.size()) };
                assert_eq!(populated, kernel_version() >= (5, 14), "MADV_POPULATE_WRITE");
                if !populated {
                    // SAFETY: from `raw_alloc_zeroed(layout)`, not used afterwards.
                    unsafe { raw_free(ptr, layout) };
                    continue;
                }
            }
            assert_eq!(resident_pages(ptr, layout.size()), pages, "{path}");
            // SAFETY: `layout.size()` initialised (zero) bytes of our own allocation.
            let bytes = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            assert!(bytes.iter().all(|&b| b == 0), "{path}");
            // SAFETY: from `raw_alloc_zeroed(layout)`, not used afterwards.
            unsafe { raw_free(ptr, layout) };
        }
    }
}
