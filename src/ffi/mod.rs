//! The C ABI (`include/bgjob.h` is generated from this module by cbindgen).
//!
//! Conventions (DESIGN §3): every export goes through [`boundary`] so no panic unwinds
//! into C; every fallible function returns a `bgjob_status` and writes results through
//! out-pointers; jobs are named by id; other objects are opaque pointers with a `_free`
//! that accepts NULL; enums from C arrive as `uint32_t` and are checked.
#![allow(non_camel_case_types)]

mod boundary;
pub mod callbacks;
pub mod context;
pub mod control;
pub mod custom;
pub mod event_queue;
pub mod job;
pub mod pool;
pub mod process;
pub mod records;
pub mod spec;
pub mod status;
pub mod types;
pub mod wait;

pub(crate) use boundary::{boundary, boundary_value, c_str, c_str_opt, non_null, timeout_from_ms};
