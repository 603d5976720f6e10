package htmltext_test

import (
	"fmt"
	"strings"

	"github.com/bbsim/bbsim/internal/htmltext"
)

func ExampleRender() {
	page := `<html><head><title>Scores</title><script>track()</script></head><body>
<h1>Tonight</h1>
<p>Home 2, away 1. <a href="http://scores.example/match/7">Report</a></p>
<ol><li>Goal, 12'</li><li>Goal, 80'</li></ol>
</body></html>`
	text, links, err := htmltext.Render(strings.NewReader(page), &htmltext.Options{Width: 40})
	if err != nil {
		panic(err)
	}
	fmt.Println(text)
	fmt.Println(links)
	// Output:
	// Tonight
	// =======
	//
	// Home 2, away 1. Report[1]
	//
	// 1. Goal, 12'
	// 2. Goal, 80'
	//
	// References
	// [1] http://scores.example/match/7
	// [http://scores.example/match/7]
}
