mod eval;
mod parse_batch;
mod parse_seed;
mod translate;
