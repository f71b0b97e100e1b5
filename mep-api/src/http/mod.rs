//! HTTP plumbing shared by the Mp1 and Mm5 listeners: the connection loop, header spelling,
//! request extractors that fail with `ProblemDetails`, and cross-cutting middleware.

pub mod etag;
pub mod extract;
pub mod header_case;
pub mod middleware;
pub mod serve;
