mod parse_seed;
