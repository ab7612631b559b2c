package store

import "github.com/stormguard/stormguard/policy"

// SetRawOverride stores an override value verbatim, as an operator could
// with redis-cli (storetest.RawOverrider).
func (m *Memory) SetRawOverride(t policy.ThreadID, v string) { m.setOverride(t, v, 0) }

// Sizes reports how many threads and links the store holds.
func (m *Memory) Sizes() (threads, links int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.threads), len(m.links)
}

// Peaks reports the high-water marks since the maps were last rebuilt.
func (m *Memory) Peaks() (threads, links int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.peakThreads, m.peakLinks
}
