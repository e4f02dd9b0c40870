"""Installing servers from the signed registry: resolve, verify, lay out, consent."""
