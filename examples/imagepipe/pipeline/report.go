package pipeline

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// Verdicts, and the rule that chooses between them.
const (
	VerdictTextured = "textured"
	VerdictSmooth   = "smooth"

	// TexturedEdgeRatio and TexturedCorners: an image is textured if at
	// least this share of its pixels are edges, or it has at least this
	// many corners.
	TexturedEdgeRatio = 0.15
	TexturedCorners   = 25
)

// Verdict is VerdictTextured if edgeRatio ≥ TexturedEdgeRatio or corners ≥
// TexturedCorners, else VerdictSmooth.
func Verdict(edgeRatio float64, corners int) string {
	if edgeRatio >= TexturedEdgeRatio || corners >= TexturedCorners {
		return VerdictTextured
	}
	return VerdictSmooth
}

// Report summarizes detect's output: a multi-line text and its
// machine-readable Summary.
func Report(d DetectOutput) ReportOutput {
	s := Summary{
		Width:         d.Width,
		Height:        d.Height,
		Original:      d.Original,
		EdgeRatio:     d.Edges.Ratio,
		Corners:       len(d.Corners),
		MeanIntensity: d.MeanIntensity,
		Verdict:       Verdict(d.Edges.Ratio, len(d.Corners)),
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Image: %dx%d %s, analysed as %dx%d grayscale\n",
		d.Original.Width, d.Original.Height, formatName(d.Original.Format), d.Width, d.Height)
	fmt.Fprintf(&b, "Mean intensity: %.1f of 255 (%s)\n", d.MeanIntensity, brightness(d.MeanIntensity))
	fmt.Fprintf(&b, "Edges: %.1f%% of pixels (Sobel magnitude > %g)\n", 100*d.Edges.Ratio, d.Edges.Threshold)
	switch len(d.Corners) {
	case 0:
		b.WriteString("Corners: none\n")
	default:
		c := d.Corners[0]
		fmt.Fprintf(&b, "Corners: %d (Harris), strongest at (%d, %d)\n", len(d.Corners), c.X, c.Y)
	}
	fmt.Fprintf(&b, "Verdict: %s", s.Verdict)
	if s.Verdict == VerdictTextured {
		fmt.Fprintf(&b, " (edges ≥ %.0f%% or corners ≥ %d)", 100*TexturedEdgeRatio, TexturedCorners)
	} else {
		fmt.Fprintf(&b, " (edges < %.0f%% and corners < %d)", 100*TexturedEdgeRatio, TexturedCorners)
	}
	b.WriteString("\n")
	return ReportOutput{Report: b.String(), Summary: s}
}

func brightness(mean float64) string {
	switch {
	case mean < 64:
		return "dark"
	case mean < 192:
		return "medium"
	}
	return "bright"
}

// reportInput is DetectOutput with the required fields as pointers, to tell
// missing from zero.
type reportInput struct {
	Width         int       `json:"width"`
	Height        int       `json:"height"`
	Original      *Original `json:"original"`
	Edges         *Edges    `json:"edges"`
	Corners       *[]Corner `json:"corners"`
	MeanIntensity *float64  `json:"meanIntensity"`
}

// ReportStep is the report function: DetectOutput (as a map) to
// ReportOutput (as a map). It writes one log line to log.
func ReportStep(params map[string]any, log io.Writer) (map[string]any, error) {
	var in reportInput
	if err := fromMap(params, &in); err != nil {
		return nil, err
	}
	var missing []string
	if in.Width <= 0 || in.Height <= 0 {
		missing = append(missing, `"width" and "height"`)
	}
	if in.Original == nil {
		missing = append(missing, `"original"`)
	}
	if in.Edges == nil {
		missing = append(missing, `"edges"`)
	}
	if in.Corners == nil {
		missing = append(missing, `"corners"`)
	}
	if in.MeanIntensity == nil {
		missing = append(missing, `"meanIntensity"`)
	}
	if len(missing) > 0 {
		return nil, errors.New("invalid input (want detect's output): missing " + strings.Join(missing, ", "))
	}
	if r := in.Edges.Ratio; !(r >= 0 && r <= 1) {
		return nil, fmt.Errorf(`"edges.ratio" must be in [0, 1], got %v`, r)
	}
	out := Report(DetectOutput{
		Width:         in.Width,
		Height:        in.Height,
		Original:      *in.Original,
		Edges:         *in.Edges,
		Corners:       *in.Corners,
		MeanIntensity: *in.MeanIntensity,
	})
	s := out.Summary
	fmt.Fprintf(log, "report: %dx%d (from %dx%d %s): %s, edges %.1f%%, %d corners\n",
		s.Width, s.Height, s.Original.Width, s.Original.Height, s.Original.Format, s.Verdict, 100*s.EdgeRatio, s.Corners)
	return toMap(out)
}
