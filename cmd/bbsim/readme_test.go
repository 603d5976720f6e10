package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bbsim/bbsim/pushinit"
)

// readmeBlock returns the commands of the README's sh block that follows the line holding
// after (continuation lines joined), as written.
func readmeBlock(t *testing.T, readme, after string) []string {
	t.Helper()
	i := strings.Index(readme, after)
	if i < 0 {
		t.Fatalf("README has no %q", after)
	}
	rest := readme[i:]
	a := strings.Index(rest, "```sh\n")
	if a < 0 {
		t.Fatalf("no sh block after %q", after)
	}
	rest = rest[a+len("```sh\n"):]
	rest = rest[:strings.Index(rest, "```")]
	var cmds []string
	for _, l := range strings.Split(strings.ReplaceAll(rest, "\\\n", " "), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			cmds = append(cmds, l)
		}
	}
	return cmds
}

// TestREADMECommands runs the README's commands for pushing to the handset, asserting
// through its control API, bbsim wait, the resets and bbsim push --wait, as written,
// against a bbsim run. The run's ports are not the defaults: bbsim's own commands get them
// from BBSIM_GATEWAY, BBSIM_SMTP and BBSIM_API (as the README says every flag can), and
// the default addresses in curl's URLs are replaced by this run's.
func TestREADMECommands(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	dir := t.TempDir()
	ports := freePorts(t, 8)
	startBBSim(t, runArgs(filepath.Join(dir, "data"), ports)...)
	api := "http://" + ports[7]
	waitAPI(t, api+"/api/v1/device", `"state": "idling"`, 30*time.Second)
	waitAPI(t, api+"/api/v1/device", `"attaches": 1`, 30*time.Second)
	addr := strings.NewReplacer("127.0.0.1:8080", ports[4], "127.0.0.1:7880", ports[7], "127.0.0.1:8025", ports[3],
		"127.0.0.1:2525", ports[2])
	run := func(cmd string) (string, int) {
		t.Helper()
		c := exec.CommandContext(t.Context(), "sh", "-c", addr.Replace(cmd))
		c.Dir = dir
		c.Env = append(os.Environ(), "PATH="+filepath.Dir(bbsimBin)+":"+os.Getenv("PATH"),
			"BBSIM_GATEWAY=http://"+ports[4], "BBSIM_SMTP="+ports[2], "BBSIM_API="+ports[7])
		out, _ := c.CombinedOutput()
		return string(out), c.ProcessState.ExitCode()
	}
	for _, block := range []struct {
		after string
		want  []string // per command, a part of its output
	}{
		{"push as a RIM push\napplication does:", []string{""}},
		{"assert what the device got through its control API:", []string{`"title": "News"`, "[", "", `"coverage": "out"`}},
	} {
		cmds := readmeBlock(t, readme, block.after)
		if len(cmds) != len(block.want) {
			t.Fatalf("README block after %q has %d commands, the test knows %d: %q", block.after, len(cmds), len(block.want), cmds)
		}
		for i, cmd := range cmds {
			if strings.Contains(cmd, "curl -sN") {
				cmd = strings.Replace(cmd, "curl -sN", "curl -sN --max-time 1", 1) // a stream: read its start
			}
			out, code := run(cmd)
			if (code != 0 && !(code == 28 && strings.Contains(cmd, "-sN"))) || !strings.Contains(out, block.want[i]) {
				t.Fatalf("%s: exit %d, want %q in\n%s", cmd, code, block.want[i], out)
			}
		}
	}
	run(`curl -s --json '{"in":true}' ` + api + "/api/v1/coverage")
	waitAPI(t, api+"/api/v1/device", `"state": "idling"`, 30*time.Second)
	waitAPI(t, api+"/api/v1/device", `"state": "attached"`, 30*time.Second)

	for _, tt := range []struct {
		after string
		codes []int
		want  []string
	}{
		{"`bbsim wait` does the same from a shell script", []int{0, 0, 0, 0, 0, 0},
			[]string{`"title":"News"`, "sent", `"subject":"Order 42"`, `"unread": 0`, `"deleted":1`}},
		{"the device's reason and exits 1", []int{1}, []string{"to 2100000A: failed, code 400 (" + pushinit.CodeMeaning(400) + "): Browser-Channel needs X-RIM-Push-Channel-ID or Content-Location"}},
	} {
		cmds := readmeBlock(t, readme, tt.after)
		for i, cmd := range cmds {
			out, code := run(cmd)
			want := ""
			if i < len(tt.want) {
				want = tt.want[i]
			}
			if code != tt.codes[i] || !strings.Contains(out, want) {
				t.Fatalf("%s: exit %d, want %d and %q in\n%s", cmd, code, tt.codes[i], want, out)
			}
		}
	}
}
