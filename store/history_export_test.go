package store

import "time"

// SetClock sets the clock the memory store expires history by.
func (m *Memory) SetClock(now func() time.Time) { m.now = now }
