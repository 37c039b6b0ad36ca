//! [`Stored`]: a value of any cacheable type, kept in place when it is small.
//!
//! This is the crate's one use of `unsafe`. A `Box<dyn Any>` per entry cost a heap allocation per
//! stored value and, with the box's fat pointer, more than doubled the memory of a small entry;
//! here a value of at most two words lives inside the slot, and a larger one in an `Arc`. The type
//! is checked against `TypeId` on every read, so bytes are never reinterpreted as another type.
#![allow(unsafe_code)]

use std::any::TypeId;
use std::mem::{align_of, size_of, MaybeUninit};
use std::sync::Arc;

use opero_core::CacheValue;

/// Room for a value stored in place: two words.
type Inline = MaybeUninit<[u64; 2]>;

/// How to handle the value in a [`Stored`], chosen per value type when it is stored.
struct VTable {
    type_id: fn() -> TypeId,
    clone: unsafe fn(&Inline) -> Inline,
    drop: unsafe fn(&mut Inline),
}

/// Whether `V` is kept in place (else in an `Arc<V>` whose pointer is kept in place).
const fn fits<V>() -> bool {
    size_of::<V>() <= size_of::<Inline>() && align_of::<V>() <= align_of::<Inline>()
}

trait Erased: CacheValue {
    const VTABLE: VTable;
}

impl<V: CacheValue> Erased for V {
    const VTABLE: VTable = VTable {
        type_id: TypeId::of::<V>,
        clone: clone_erased::<V>,
        drop: drop_erased::<V>,
    };
}

/// Clones the value in `data`, which must hold a `V` as [`Stored::new`] put it.
unsafe fn clone_erased<V: CacheValue>(data: &Inline) -> Inline {
    let mut out = Inline::uninit();
    if fits::<V>() {
        // SAFETY: `data` holds an initialized `V` in place (the caller's contract).
        let v = unsafe { &*data.as_ptr().cast::<V>() };
        unsafe { out.as_mut_ptr().cast::<V>().write(v.clone()) };
    } else {
        // SAFETY: `data` holds an `Arc<V>`; cloning it only bumps the count.
        let arc = unsafe { &*data.as_ptr().cast::<Arc<V>>() };
        unsafe { out.as_mut_ptr().cast::<Arc<V>>().write(Arc::clone(arc)) };
    }
    out
}

/// Drops the value in `data`, which must hold a `V` as [`Stored::new`] put it.
unsafe fn drop_erased<V: CacheValue>(data: &mut Inline) {
    // SAFETY: `data` holds an initialized `V` or `Arc<V>` (the caller's contract), dropped once.
    unsafe {
        if fits::<V>() {
            data.as_mut_ptr().cast::<V>().drop_in_place();
        } else {
            data.as_mut_ptr().cast::<Arc<V>>().drop_in_place();
        }
    }
}

/// A value of any cacheable type, without a `Box<dyn Any>` allocation for small ones.
pub(crate) struct Stored {
    vtable: &'static VTable,
    data: Inline,
}

// SAFETY: a `Stored` only ever holds a `V: CacheValue` (Send + Sync) or an `Arc` of one.
unsafe impl Send for Stored {}
// SAFETY: as above; shared access only clones.
unsafe impl Sync for Stored {}

impl Stored {
    pub(crate) fn new<V: CacheValue>(value: &V) -> Self {
        let mut data = Inline::uninit();
        if fits::<V>() {
            // SAFETY: `V` fits in `Inline` in size and alignment (checked above).
            unsafe { data.as_mut_ptr().cast::<V>().write(value.clone()) };
        } else {
            // SAFETY: an `Arc` is one pointer, which fits.
            unsafe {
                data.as_mut_ptr()
                    .cast::<Arc<V>>()
                    .write(Arc::new(value.clone()))
            };
        }
        Stored {
            vtable: &<V as Erased>::VTABLE,
            data,
        }
    }

    /// The value, when it is a `V`.
    #[inline]
    pub(crate) fn take<V: CacheValue>(self) -> Option<V> {
        if (self.vtable.type_id)() != TypeId::of::<V>() {
            return None;
        }
        let this = std::mem::ManuallyDrop::new(self);
        if fits::<V>() {
            // SAFETY: the type check above; ownership moves out and `this` is never dropped.
            Some(unsafe { this.data.as_ptr().cast::<V>().read() })
        } else {
            // SAFETY: as above, for the `Arc<V>` this slot owns.
            let arc = unsafe { this.data.as_ptr().cast::<Arc<V>>().read() };
            // The store holds the entry's own reference, so the value is shared: cloned at once,
            // without first trying (one more atomic operation) to take it whole.
            let value = (*arc).clone();
            drop(arc);
            Some(value)
        }
    }
}

impl Clone for Stored {
    fn clone(&self) -> Self {
        Stored {
            vtable: self.vtable,
            // SAFETY: `data` holds the type `vtable` was made for.
            data: unsafe { (self.vtable.clone)(&self.data) },
        }
    }
}

impl Drop for Stored {
    fn drop(&mut self) {
        // SAFETY: `data` holds the type `vtable` was made for, and is dropped only here.
        unsafe { (self.vtable.drop)(&mut self.data) }
    }
}
