package history

import "time"

// SetClock sets the clock the memory history expires by.
func (m *Memory) SetClock(now func() time.Time) { m.now = now }
