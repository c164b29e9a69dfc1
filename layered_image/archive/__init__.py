"""Writing images: the tar format, store layers, and the archive formats built on them."""
