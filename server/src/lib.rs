pub mod mailfmt;
