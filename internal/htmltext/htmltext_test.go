package htmltext

import (
	"bytes"
	"errors"
	"io"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"
	"unicode/utf8"

	"golang.org/x/net/html/charset"
)

func TestRender(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		in    string
		width int
		want  string
		links []string
	}{
		{"heading and paragraph", "<h1>Title</h1><p>Hello <b>bold</b> world.</p>", 0,
			"Title\n=====\n\nHello bold world.", nil},
		{"h2 and h3", "<h2>Two</h2><h3>Three</h3>text", 0, "Two\n---\n\nThree\n\ntext", nil},
		{"scripts and styles dropped", "<head><title>T</title><style>p{color:red}</style></head><script>alert('x')</script><p>kept</p><noscript>no</noscript>", 0,
			"kept", nil},
		{"unordered list", "<ul><li>one<li>two</ul>after", 0, "* one\n* two\n\nafter", nil},
		{"nested ordered", "<ol><li>a<ol><li>b</li><li>c</li></ol></li><li>d</li></ol>", 0, "1. a\n  1. b\n  2. c\n2. d", nil},
		{"links numbered once", `<p><a href="http://a/">A</a> <a href="http://b/">B</a> <a href="http://a/">again</a> <a href="#top">top</a> <a href="javascript:x()">js</a></p>`, 0,
			"A[1] B[2] again[1] top js\n\nReferences\n[1] http://a/\n[2] http://b/", []string{"http://a/", "http://b/"}},
		{"wrap", "<p>aaa bbb ccc ddd eee fff ggg hhh iii jjj kkk lll mmm nnn ooo ppp</p>", 20,
			"aaa bbb ccc ddd eee\nfff ggg hhh iii jjj\nkkk lll mmm nnn ooo\nppp", nil},
		{"wrapped list item indents", "<ul><li>aaa bbb ccc ddd eee fff ggg hhh</li></ul>", 20,
			"* aaa bbb ccc ddd\n  eee fff ggg hhh", nil},
		{"pre kept", "<p>x</p><pre>  a  b\n c</pre><p>y</p>", 0, "x\n\n  a  b\n c\n\ny", nil},
		{"inline elements join words", "<p>foo<b>bar</b> <i>baz</i>\n\t qux<span> </span>end</p>", 0, "foobar baz qux end", nil},
		{"white space only cells", strings.Repeat("<td> ", 5) + "<td>x<td> <td>y", 0, "x | | y", nil},
		{"entities", "<p>caf&eacute; &lt;tag&gt; &amp; &#x263A;</p>", 0, "café <tag> & ☺", nil},
		{"broken markup", "<p>one<div>two</span></p><p><i>three", 0, "one\ntwo\n\nthree", nil},
		{"stray end tags", "</li></ul></ol></pre></script>text", 0, "text", nil},
		{"img alt and br", "a<br>b <img src=x alt=pic> c<hr>d", 0, "a\nb [pic] c\n\n----------------\n\nd", nil},
		{"table", "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>", 0, "a | b\nc | d", nil},
		{"meta charset", "<meta charset=windows-1252><p>caf\xe9 \x93q\x94</p>", 0, "café “q”", nil},
		{"utf-16 bom", string([]byte{0xff, 0xfe, '<', 0, 'p', 0, '>', 0, 'h', 0, 'i', 0}), 0, "hi", nil},
		{"invalid utf-8 kept readable", "<meta charset=utf-8><p>a\xffb</p>", 0, "a\uFFFDb", nil},
		{"unknown charset", "<meta charset=klingon><p>plain</p>", 0, "plain", nil},
		{"unclosed script", "<p>before</p><script>document.write('<p>x</p>')", 0, "before", nil},
		{"empty", "", 80, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, links, err := Render(strings.NewReader(tc.in), &Options{Width: tc.width})
			if err != nil {
				t.Fatalf("Render(%q) error %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("Render(%q) =\n%s\nwant\n%s", tc.in, got, tc.want)
			}
			if strings.Join(links, " ") != strings.Join(tc.links, " ") {
				t.Errorf("Render(%q) links = %q, want %q", tc.in, links, tc.links)
			}
		})
	}
}

func TestRenderContentTypeCharset(t *testing.T) {
	t.Parallel()
	got, _, err := Render(strings.NewReader("<p>\xe9t\xe9</p>"), &Options{ContentType: "text/html; charset=iso-8859-1"})
	if err != nil || got != "été" {
		t.Fatalf("Render latin-1 = %q, %v; want été", got, err)
	}
}

func TestRenderRelativeLinks(t *testing.T) {
	t.Parallel()
	base, _ := url.Parse("http://news.example/sport/today.html")
	tests := []struct {
		in    string
		links []string
	}{
		{`<a href="scores.html">s</a> <a href="/index">i</a> <a href="http://other/">o</a>`,
			[]string{"http://news.example/sport/scores.html", "http://news.example/index", "http://other/"}},
		{`<base href="http://cdn.example/x/"><a href="y">y</a>`, []string{"http://cdn.example/x/y"}},
		{`<a href="../a">a</a><a href="/sport/a">same</a>`, []string{"http://news.example/a", "http://news.example/sport/a"}},
	}
	for _, tc := range tests {
		_, links, err := Render(strings.NewReader(tc.in), &Options{ContentType: "text/html", Base: base})
		if err != nil || strings.Join(links, " ") != strings.Join(tc.links, " ") {
			t.Errorf("Render(%q) links = %q, %v; want %q", tc.in, links, err, tc.links)
		}
	}
}

func TestRenderHostile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want string // must appear in the output
	}{
		{"deep divs", strings.Repeat("<div>", 200000) + "deep" + strings.Repeat("</div>", 200000), "deep"},
		{"deep unclosed lists", strings.Repeat("<ul><li>", 100000) + "leaf", "leaf"},
		{"deep inline", strings.Repeat("<b><i>", 100000) + "x", "x"},
		{"deep scripts", strings.Repeat("<div>", 300) + strings.Repeat("<script>s</script>", 1000) + "after", "after"},
		{"many links", strings.Repeat(`<a href="http://l/">l</a>`, 50000), "[1] http://l/"},
		{"white space cells", strings.Repeat("<td> ", 200000) + "<td>z", "z"},
		{"white space items", strings.Repeat("<li> \n", 200000) + "z", "z"},
		{"long word", "<p>" + strings.Repeat("x", 1<<20) + "</p>", "xxxx"},
		{"attribute soup", strings.Repeat(`<p a="`, 10000) + "z", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			got, _, err := Render(strings.NewReader(tc.in), &Options{Width: 72})
			if err != nil {
				t.Fatalf("Render error %v", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Render took %v on %d bytes", d, len(tc.in))
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("Render output (%d bytes) lacks %q", len(got), tc.want)
			}
			if !utf8.ValidString(got) {
				t.Errorf("Render output is not UTF-8")
			}
			for _, l := range strings.Split(got, "\n") {
				if n := len(l) - len(strings.TrimLeft(l, " ")); n > maxIndent+4 {
					t.Fatalf("line indented %d columns: %.40q", n, l)
				}
			}
		})
	}
}

func TestRenderReadError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("<p>partial text</p>"), iotest.ErrReader(boom))
	got, _, err := Render(r, nil)
	if !errors.Is(err, boom) {
		t.Fatalf("Render error = %v, want boom", err)
	}
	if got != "partial text" {
		t.Fatalf("Render = %q, want the text read before the error", got)
	}
}

func FuzzRender(f *testing.F) {
	for _, s := range []string{
		"<h1>x</h1><p>y <a href=z>l</a></p>",
		"<ul><li>a<ol><li>b</ul>",
		"<script>x</script><style>y</style><pre>\n z</pre>",
		"<meta charset=shift_jis>\x82\xa0",
		"\xfe\xff\x00<\x00p",
		"<table><td>a<td>b<tr><th>c",
		"</a></a><a href=javascript:1>",
		strings.Repeat("<div>", 300),
	} {
		f.Add([]byte(s), 40)
	}
	f.Fuzz(func(t *testing.T, in []byte, width int) {
		width %= 200
		if prefix := in[:min(len(in), sniffLen)]; plainUTF8(prefix, "") {
			// DetermineEncoding falls back to windows-1252 for ASCII, which reads the same.
			if _, name, _ := charset.DetermineEncoding(prefix, ""); name != "utf-8" && !isASCII(prefix[:max(len(prefix)-3, 0)]) {
				t.Fatalf("plainUTF8 says UTF-8, DetermineEncoding says %s", name)
			}
		}
		got, links, err := Render(bytes.NewReader(in), &Options{Width: width})
		if err != nil {
			t.Fatalf("Render error %v", err)
		}
		if !utf8.ValidString(got) {
			t.Fatalf("Render output not UTF-8: %q", got)
		}
		for i, l := range links {
			if !strings.Contains(got, "["+strconv.Itoa(i+1)+"] "+l) {
				t.Fatalf("link %d %q missing from references", i+1, l)
			}
		}
	})
}

func BenchmarkRender(b *testing.B) {
	var page strings.Builder
	page.WriteString("<html><head><title>News</title><style>body{}</style></head><body>")
	for i := range 40 {
		page.WriteString("<h2>Story</h2><p>Lorem ipsum dolor sit amet, <a href=\"http://news.example/")
		page.WriteString(strconv.Itoa(i))
		page.WriteString("\">consectetur</a> adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua.</p>")
		page.WriteString("<ul><li>one</li><li>two &amp; three</li></ul><script>var x = 1;</script>")
	}
	page.WriteString("</body></html>")
	in := []byte(page.String())
	b.SetBytes(int64(len(in)))
	opts := &Options{Width: 72}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Render(bytes.NewReader(in), opts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(float64(len(in))/1024), "ns/KiB")
}
