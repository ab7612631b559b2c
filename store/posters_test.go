package store_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stormguard/stormguard/internal/testenv/redisenv"
	"github.com/stormguard/stormguard/store"
)

// TestGlobalsPosters: the sender gate's posters set, as an operator fills
// it with redis-cli, is read in SSCAN chunks (more members than one chunk
// here), lower-cased, and a member that cannot be a sender, @domain or
// login (spaces) is left out and reported, naming the key.
func TestGlobalsPosters(t *testing.T) {
	defer store.SetGlobalsChunk(50)()
	h := openRedis(t, redisenv.Start(t), false)
	k := h.Keys()
	args := []string{"SADD", k.Posters(), "Comms@Example.org", "@hr.example.org", "jdoe", "two words"}
	for i := range 300 {
		args = append(args, fmt.Sprintf("poster%d@example.org", i))
	}
	redisenv.CLI(t, h.addr, args...)
	g, err := h.Globals(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Posters) != 303 || !slices.Contains(g.Posters, "comms@example.org") || !slices.Contains(g.Posters, "@hr.example.org") ||
		!slices.Contains(g.Posters, "jdoe") || !slices.Contains(g.Posters, "poster299@example.org") {
		t.Errorf("Posters: %d, want 303 with comms@example.org, @hr.example.org, jdoe, poster299@example.org", len(g.Posters))
	}
	if g.Invalid[k.Posters()] != 1 || len(g.Problems) != 1 || g.Problems[0].Key != k.Posters() || g.Problems[0].Field != "two words" ||
		!strings.Contains(g.Problems[0].Why, "left out") {
		t.Errorf("Invalid %v, Problems %+v; want the member with a space reported under %s", g.Invalid, g.Problems, k.Posters())
	}
}
