//! poirot: a span stream processor. See the README for what it does and `DESIGN.md`
//! for the definitions its analyses implement.

pub mod decode;
pub mod model;
