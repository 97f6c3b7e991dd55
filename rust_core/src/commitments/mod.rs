//! Filecoin's data commitments, computed without the padded data ever existing in memory:
//! piece sizes (`piece_size`), commP of a piece (`commp`), commD of a sector from its pieces
//! (`commd`), the zero-piece table both use (`zero_comm`), the left-to-right stack of subtree
//! roots that builds every such root in O(log n) memory (`root_stack`), and the CIDs that name
//! the commitments (`piece_cid`).

pub mod commd;
pub mod commp;
pub mod piece_cid;
pub mod piece_size;
pub mod root_stack;
pub mod zero_comm;
