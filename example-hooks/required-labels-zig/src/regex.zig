//! A small regular-expression matcher for label patterns: the subset of `regex-lite` syntax that
//! label rules need, with the same meaning, and nothing else.
//!
//! Supported: literals; `.` (any character but `\n`); anchors `^` (start of the value) and `$`
//! (end of the value); the quantifiers `*`, `+`, `?` (a trailing `?` for the lazy form is
//! accepted and, since only "does it match" is asked, means the same); character classes `[…]`
//! and `[^…]` with ranges (`[a-z0-9-]`), `]` first and `-` first or last taken literally;
//! `\d \D \w \W \s \S` (ASCII, as in regex-lite), `\n \t \r \f \v`, and a backslash before any of
//! `\ . + * ? ( ) | [ ] { } ^ $ # & - ~` for the character itself.
//!
//! Refused with a message (`validate-settings` says which construct): groups `( )`, alternation
//! `|`, counted repetition `{n,m}` (and a bare `}`), a quantifier on nothing, on an anchor or on
//! another quantifier, nested classes and class set operations (`[[:alpha:]]`, `&&`, `--`, `~~`),
//! inline flags, Unicode classes `\p{…}`, word boundaries, `\x`/`\u` escapes, back-references.
//!
//! Matching is unanchored (a pattern matches if it matches anywhere in the value, like
//! `Regex::is_match`) and works on Unicode scalar values. It simulates the pattern's NFA, so the
//! time is linear in the value's length times the pattern's, whatever the pattern.

const std = @import("std");

pub const max_pattern_chars = 4096;

pub const Range = struct { lo: u21, hi: u21 };

pub const Atom = union(enum) {
    literal: u21,
    /// Any character except `\n`.
    any,
    class: Class,
    /// `^`: only at the start of the value.
    bol,
    /// `$`: only at the end of the value.
    eol,
};

pub const Class = struct {
    negated: bool,
    ranges: []const Range,

    fn matches(self: Class, c: u21) bool {
        var hit = false;
        for (self.ranges) |r| {
            if (c >= r.lo and c <= r.hi) {
                hit = true;
                break;
            }
        }
        return hit != self.negated;
    }
};

pub const Quant = enum { one, star, opt };

pub const Node = struct { atom: Atom, quant: Quant = .one };

pub const CompileError = error{ InvalidPattern, OutOfMemory };

pub const Regex = struct {
    source: []const u8,
    nodes: []const Node,

    /// Whether the pattern matches anywhere in `text`.
    pub fn isMatch(self: Regex, allocator: std.mem.Allocator, text: []const u8) std.mem.Allocator.Error!bool {
        const chars = try decode(allocator, text);
        defer allocator.free(chars);
        const n = self.nodes.len;
        var cur = try allocator.alloc(bool, n + 1);
        defer allocator.free(cur);
        var next = try allocator.alloc(bool, n + 1);
        defer allocator.free(next);
        @memset(cur, false);
        var pos: usize = 0;
        while (true) : (pos += 1) {
            // A match may start at any position.
            self.addState(cur, 0, pos, chars.len);
            if (cur[n]) return true;
            if (pos == chars.len) return false;
            const c = chars[pos];
            @memset(next, false);
            for (self.nodes, 0..) |node, i| {
                if (!cur[i] or !consumes(node.atom, c)) continue;
                self.addState(next, if (node.quant == .star) i else i + 1, pos + 1, chars.len);
            }
            const tmp = cur;
            cur = next;
            next = tmp;
            if (cur[n]) return true;
        }
    }

    /// Adds state `i` at position `pos` and every state reachable from it without consuming.
    fn addState(self: Regex, set: []bool, i: usize, pos: usize, len: usize) void {
        var state = i;
        while (!set[state]) {
            set[state] = true;
            if (state == self.nodes.len) return;
            const node = self.nodes[state];
            // An anchor is passed when it holds; `x*` and `x?` may be skipped (taking the atom is
            // the consuming step in `isMatch`, which is why the state itself stays in the set).
            const pass = switch (node.atom) {
                .bol => pos == 0,
                .eol => pos == len,
                else => node.quant != .one,
            };
            if (!pass) return;
            state += 1;
        }
    }
};

fn consumes(atom: Atom, c: u21) bool {
    return switch (atom) {
        .literal => |l| l == c,
        .any => c != '\n',
        .class => |class| class.matches(c),
        .bol, .eol => false,
    };
}

/// The text as Unicode scalar values; bytes one by one if it is not UTF-8.
fn decode(allocator: std.mem.Allocator, text: []const u8) std.mem.Allocator.Error![]u21 {
    var chars = try std.ArrayList(u21).initCapacity(allocator, text.len);
    errdefer chars.deinit();
    if (std.unicode.Utf8View.init(text)) |view| {
        var it = view.iterator();
        while (it.nextCodepoint()) |c| chars.appendAssumeCapacity(c);
    } else |_| {
        for (text) |b| chars.appendAssumeCapacity(b);
    }
    return chars.toOwnedSlice();
}

/// Compiles `pattern`; on `error.InvalidPattern`, `diag.*` says what is wrong or unsupported.
pub fn compile(allocator: std.mem.Allocator, pattern: []const u8, diag: *[]const u8) CompileError!Regex {
    var p = Parser{ .allocator = allocator, .diag = diag, .chars = &.{} };
    const view = std.unicode.Utf8View.init(pattern) catch return p.fail("the pattern is not valid UTF-8");
    var chars = std.ArrayList(u21).init(allocator);
    defer chars.deinit();
    var it = view.iterator();
    while (it.nextCodepoint()) |c| {
        if (chars.items.len == max_pattern_chars) return p.fail("the pattern is longer than 4096 characters");
        try chars.append(c);
    }
    p.chars = chars.items;
    return .{ .source = pattern, .nodes = try p.parse() };
}

const meta = "\\.+*?()|[]{}^$#&-~";

const digit = [_]Range{.{ .lo = '0', .hi = '9' }};
const word = [_]Range{ .{ .lo = '0', .hi = '9' }, .{ .lo = 'A', .hi = 'Z' }, .{ .lo = '_', .hi = '_' }, .{ .lo = 'a', .hi = 'z' } };
const space = [_]Range{ .{ .lo = '\t', .hi = '\r' }, .{ .lo = ' ', .hi = ' ' } };

const Escape = union(enum) { literal: u21, class: Class };

const Parser = struct {
    allocator: std.mem.Allocator,
    diag: *[]const u8,
    chars: []const u21,
    i: usize = 0,

    fn fail(self: *Parser, message: []const u8) CompileError {
        self.diag.* = message;
        return error.InvalidPattern;
    }

    fn peek(self: *Parser, ahead: usize) ?u21 {
        const at = self.i + ahead;
        return if (at < self.chars.len) self.chars[at] else null;
    }

    fn parse(self: *Parser) CompileError![]const Node {
        var nodes = std.ArrayList(Node).init(self.allocator);
        errdefer nodes.deinit();
        // Whether the last node may take a quantifier: not an anchor, not already quantified.
        var quantifiable = false;
        while (self.peek(0)) |c| {
            self.i += 1;
            switch (c) {
                '*', '+', '?' => {
                    if (!quantifiable) return self.fail(if (nodes.items.len == 0)
                        "a quantifier (*, + or ?) must follow something to repeat"
                    else
                        "a quantifier (*, + or ?) may not follow an anchor or another quantifier (only the lazy form x*? x+? x?? is accepted)");
                    const last = &nodes.items[nodes.items.len - 1];
                    switch (c) {
                        '*' => last.quant = .star,
                        '?' => last.quant = .opt,
                        else => try nodes.append(.{ .atom = last.atom, .quant = .star }),
                    }
                    quantifiable = false;
                    if (self.peek(0) == '?') self.i += 1; // lazy: same verdict for is_match
                    continue;
                },
                '^' => {
                    try nodes.append(.{ .atom = .bol });
                    quantifiable = false;
                    continue;
                },
                '$' => {
                    try nodes.append(.{ .atom = .eol });
                    quantifiable = false;
                    continue;
                },
                '(', ')' => return self.fail("groups ( ) are not supported"),
                '|' => return self.fail("alternation | is not supported"),
                '{', '}' => return self.fail("counted repetition {n,m} is not supported (write \\{ or \\} for the character)"),
                '.' => try nodes.append(.{ .atom = .any }),
                '[' => try nodes.append(.{ .atom = .{ .class = try self.class() } }),
                '\\' => try nodes.append(.{ .atom = switch (try self.escape()) {
                    .literal => |l| .{ .literal = l },
                    .class => |cl| .{ .class = cl },
                } }),
                else => try nodes.append(.{ .atom = .{ .literal = c } }),
            }
            quantifiable = true;
        }
        return nodes.toOwnedSlice();
    }

    /// After a backslash.
    fn escape(self: *Parser) CompileError!Escape {
        const c = self.peek(0) orelse return self.fail("the pattern ends with a lone backslash");
        self.i += 1;
        return switch (c) {
            'd' => .{ .class = .{ .negated = false, .ranges = &digit } },
            'D' => .{ .class = .{ .negated = true, .ranges = &digit } },
            'w' => .{ .class = .{ .negated = false, .ranges = &word } },
            'W' => .{ .class = .{ .negated = true, .ranges = &word } },
            's' => .{ .class = .{ .negated = false, .ranges = &space } },
            'S' => .{ .class = .{ .negated = true, .ranges = &space } },
            'n' => .{ .literal = '\n' },
            't' => .{ .literal = '\t' },
            'r' => .{ .literal = '\r' },
            'f' => .{ .literal = 0x0c },
            'v' => .{ .literal = 0x0b },
            else => if (c < 0x80 and std.mem.indexOfScalar(u8, meta, @intCast(c)) != null)
                .{ .literal = c }
            else
                self.fail("unsupported escape: only \\d \\D \\w \\W \\s \\S \\n \\t \\r \\f \\v and a backslash before one of \\ . + * ? ( ) | [ ] { } ^ $ # & - ~ are supported"),
        };
    }

    /// After `[`.
    fn class(self: *Parser) CompileError!Class {
        var ranges = std.ArrayList(Range).init(self.allocator);
        errdefer ranges.deinit();
        var negated = false;
        if (self.peek(0) == '^') {
            negated = true;
            self.i += 1;
        }
        var first = true;
        while (true) : (first = false) {
            const c = self.peek(0) orelse return self.fail("unclosed character class: a [ without its ]");
            if (c == ']' and !first) {
                self.i += 1;
                break;
            }
            if (c == '[') return self.fail("nested classes and [:name:] classes are not supported inside [ ]");
            if ((c == '&' or c == '-' or c == '~') and self.peek(1) == c)
                return self.fail("class set operations (&&, --, ~~) are not supported");
            const lo = switch (try self.classItem()) {
                .literal => |l| l,
                .class => |cl| {
                    if (self.peek(0) == '-' and self.peek(1) != null and self.peek(1) != ']')
                        return self.fail("a range in a class must start with a character, not a class like \\d");
                    try addClass(&ranges, cl);
                    continue;
                },
            };
            // `a-z` is a range unless the `-` is the last thing in the class.
            if (self.peek(0) == '-' and self.peek(1) != null and self.peek(1) != ']') {
                self.i += 1;
                if (self.peek(0) == '[') return self.fail("nested classes and [:name:] classes are not supported inside [ ]");
                const hi = switch (try self.classItem()) {
                    .literal => |l| l,
                    .class => return self.fail("a range in a class must end with a character, not a class like \\d"),
                };
                if (hi < lo) return self.fail("invalid range in a class: its start is after its end");
                try ranges.append(.{ .lo = lo, .hi = hi });
            } else {
                try ranges.append(.{ .lo = lo, .hi = lo });
            }
        }
        return .{ .negated = negated, .ranges = try ranges.toOwnedSlice() };
    }

    fn classItem(self: *Parser) CompileError!Escape {
        const c = self.peek(0).?;
        self.i += 1;
        if (c == '\\') return self.escape();
        return .{ .literal = c };
    }
};

/// Adds the characters of a `\d`-like class to a class being built (complemented if negated).
fn addClass(ranges: *std.ArrayList(Range), class: Class) !void {
    if (!class.negated) return ranges.appendSlice(class.ranges);
    // The shorthand ranges are sorted and disjoint: their complement is the gaps between them.
    var next: u21 = 0;
    for (class.ranges) |r| {
        if (r.lo > next) try ranges.append(.{ .lo = next, .hi = r.lo - 1 });
        next = r.hi + 1;
    }
    try ranges.append(.{ .lo = next, .hi = 0x10ffff });
}

// ---------------------------------------------------------------------------------------------
// Tests: `python3 -m ziglang test src/regex.zig` (native, no WASI needed).
// ---------------------------------------------------------------------------------------------

fn expectMatch(pattern: []const u8, text: []const u8, want: bool) !void {
    var diag: []const u8 = "";
    var arena = std.heap.ArenaAllocator.init(std.testing.allocator);
    defer arena.deinit();
    const re = compile(arena.allocator(), pattern, &diag) catch |e| {
        std.debug.print("compile {s}: {s}\n", .{ pattern, diag });
        return e;
    };
    const got = try re.isMatch(std.testing.allocator, text);
    if (got != want) {
        std.debug.print("`{s}` on `{s}`: want {}, got {}\n", .{ pattern, text, want, got });
        return error.TestUnexpectedResult;
    }
}

fn expectRefused(pattern: []const u8) !void {
    var diag: []const u8 = "";
    var arena = std.heap.ArenaAllocator.init(std.testing.allocator);
    defer arena.deinit();
    if (compile(arena.allocator(), pattern, &diag)) |_| {
        std.debug.print("`{s}` should be refused\n", .{pattern});
        return error.TestUnexpectedResult;
    } else |e| try std.testing.expectEqual(error.InvalidPattern, e);
    try std.testing.expect(diag.len > 0);
}

test "label patterns of the fixtures and the README" {
    try expectMatch("^[a-z-]+$", "payments", true);
    try expectMatch("^[a-z-]+$", "Payments", false);
    try expectMatch("^[a-z-]+$", "", false);
    try expectMatch("^[a-z-]+$", "team-a", true);
    try expectMatch(".*", "", true);
    try expectMatch(".*", "alice", true);
    try expectMatch("", "anything", true);
}

test "unanchored unless anchored" {
    try expectMatch("pay", "payments", true);
    try expectMatch("ments", "payments", true);
    try expectMatch("^ments", "payments", false);
    try expectMatch("pay$", "payments", false);
    try expectMatch("s$", "payments", true);
    try expectMatch("^$", "", true);
    try expectMatch("^$", "x", false);
    try expectMatch("a^b", "a^b", false);
}

test "quantifiers" {
    try expectMatch("^ab*c$", "ac", true);
    try expectMatch("^ab*c$", "abbbc", true);
    try expectMatch("^ab+c$", "ac", false);
    try expectMatch("^ab+c$", "abc", true);
    try expectMatch("^ab?c$", "abbc", false);
    try expectMatch("^ab?c$", "abc", true);
    try expectMatch("^a*a*a*a*a*b$", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaac", false);
    try expectMatch("^a.+?z$", "abcz", true);
    try expectMatch("^v[0-9]+\\.[0-9]+$", "v1.23", true);
    try expectMatch("^v[0-9]+\\.[0-9]+$", "v1x23", false);
}

test "classes and escapes" {
    try expectMatch("^[]a]+$", "]a]", true);
    try expectMatch("^[^a-z]$", "A", true);
    try expectMatch("^[^a-z]$", "q", false);
    try expectMatch("^[^a]$", "\n", true);
    try expectMatch("^.$", "\n", false);
    try expectMatch("^[-a]+$", "-a-", true);
    try expectMatch("^[a\\-z]+$", "-", true);
    try expectMatch("^[a\\-z]+$", "b", false);
    try expectMatch("^\\d+$", "123", true);
    try expectMatch("^\\d+$", "12a", false);
    try expectMatch("^[\\D]+$", "ab", true);
    try expectMatch("^[\\D]+$", "a1", false);
    try expectMatch("^[\\d-]+$", "1-2", true);
    try expectMatch("^\\w+$", "a_B9", true);
    try expectMatch("^\\W$", "-", true);
    try expectMatch("^\\s$", "\t", true);
    try expectMatch("^\\S+$", "a b", false);
    try expectMatch("^a\\.b$", "a.b", true);
    try expectMatch("^a\\.b$", "axb", false);
    try expectMatch("^\\$\\^\\*\\\\$", "$^*\\", true);
}

test "characters, not bytes" {
    try expectMatch("^.$", "é", true);
    try expectMatch("^[à-ÿ]+$", "éè", true);
    try expectMatch("^é+$", "éé", true);
}

test "patterns outside the subset are refused" {
    for ([_][]const u8{
        "^[a-z",       "(ab)",   "a|b",     "a{2}",   "a{2,3}",   "}",      "*a",      "+",     "?",   "^*",  "a**",   "a*+",
        "[[:alpha:]]", "[a&&b]", "[a--b]",  "[a~~b]", "(?i)team", "\\p{L}", "\\bword", "\\x41", "\\1", "a\\", "[z-a]", "[a-\\d]",
        "\\<",         "\\/",    "[\\d-z]",
    }) |pattern| try expectRefused(pattern);
}
