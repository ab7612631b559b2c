package store

// SetGlobalsChunk sets how many entries one HSCAN or SSCAN of Globals asks
// for, and returns a func that restores it.
func SetGlobalsChunk(n int64) (restore func()) {
	old := globalsChunk
	globalsChunk = n
	return func() { globalsChunk = old }
}
