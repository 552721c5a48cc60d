//! A broken `tagger` 2.0.0 (hot-swap tests): 96 MiB of zeroed statics make the module's
//! initial memory larger than the default 64 MiB limit, so it cannot be instantiated.

use std::hint::black_box;

static mut BALLAST: [u8; 96 << 20] = [0; 96 << 20];

weir_plugin::scalar_udfs! {
    plugin: { name: "tagger", version: "2.0.0-huge-memory", description: "Needs 96 MiB at start" },

    /// Tags "v2" (if it could ever run).
    fn tag(seq: i64) -> String {
        // The pointer goes through black_box so the optimizer must keep the whole static.
        let ballast = black_box(std::ptr::addr_of!(BALLAST).cast::<u8>());
        let index = (seq.unsigned_abs() % (96 << 20)) as usize;
        // SAFETY: `index` is within the static; only read, single-threaded guest.
        let first = unsafe { ballast.add(index).read() };
        format!("v2-{first}-{seq}")
    }
}
