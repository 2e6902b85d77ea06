//! portcullis-pending (in progress)
