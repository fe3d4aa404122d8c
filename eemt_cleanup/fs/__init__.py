"""Safe, file-descriptor based deletion and size accounting."""
