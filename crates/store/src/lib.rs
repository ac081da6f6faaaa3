//! placeholder: replaced by the domus-store work.
