//! The required-labels release hook (release-hook v1) in Zig, standard library only: the same
//! rule as the Rust hook in ../../required-labels, built for wasm32-wasi into a WASI preview 1
//! command module.
//!
//! Protocol: argv is ["hook", "check"] or ["hook", "validate-settings"] (no argument means
//! check); stdin is one HookRequest; stdout gets one HookResponse and the module exits 0. A
//! request that cannot be read, an unknown command, or settings that are invalid during check is
//! a hook error: a line on stderr and exit status 1.

const std = @import("std");
const builtin = @import("builtin");
const regex = @import("regex.zig");

const Allocator = std.mem.Allocator;
const Value = std.json.Value;

const api_version = "kubectl-release.io/hooks/v1";
const request_kind = "HookRequest";
const pin_advice = "pin it by digest (@sha256:…) or tag it with the full commit hash";
const max_request_bytes = 32 << 20;

const WorkloadRef = struct { kind: []const u8, namespace: []const u8, name: []const u8 };

const Violation = struct {
    workload: ?WorkloadRef,
    field: ?[]const u8,
    message: []const u8,
};

const Response = struct {
    allowed: bool,
    message: ?[]const u8 = null,
    violations: []const Violation = &.{},
    warnings: []const []const u8 = &.{},
};

/// One required label: its key and the pattern its value must match.
const Rule = struct { key: []const u8, pattern: regex.Regex };

/// The reason of the last `error.Hook`, printed on stderr.
var failure: []const u8 = "";

fn fail(allocator: Allocator, comptime fmt: []const u8, args: anytype) error{ Hook, OutOfMemory } {
    failure = try std.fmt.allocPrint(allocator, fmt, args);
    return error.Hook;
}

pub fn main() void {
    // One short-lived run: nothing is freed at the end, but the allocator reuses what growing
    // buffers and maps give back (an arena would keep every outgrown copy of a 1 MiB request).
    // (The page allocator only when built natively, for trying the hook on the host.)
    const allocator = if (builtin.cpu.arch.isWasm()) std.heap.wasm_allocator else std.heap.page_allocator;
    const out = serve(allocator) catch |err| {
        const reason = if (err == error.Hook) failure else @errorName(err);
        std.io.getStdErr().writer().print("error: {s}\n", .{reason}) catch {};
        std.process.exit(1);
    };
    std.io.getStdOut().writeAll(out) catch std.process.exit(1);
}

/// Runs one command and returns the response document to print.
fn serve(allocator: Allocator) ![]const u8 {
    const args = try std.process.argsAlloc(allocator);
    const command: []const u8 = if (args.len > 1) args[1] else "check";
    const validate = std.mem.eql(u8, command, "validate-settings");
    if (!validate and !std.mem.eql(u8, command, "check"))
        return fail(allocator, "unknown command `{s}`: expected `check` or `validate-settings`", .{command});

    const input = std.io.getStdIn().reader().readAllAlloc(allocator, max_request_bytes) catch |e|
        return fail(allocator, "cannot read stdin: {s}", .{@errorName(e)});
    const root = std.json.parseFromSliceLeaky(Value, allocator, input, .{
        .duplicate_field_behavior = .use_last,
        // Numbers stay as written, so a label value that is a number reads as its text.
        .parse_numbers = false,
    }) catch |e| return fail(allocator, "cannot read the HookRequest on stdin: {s}", .{@errorName(e)});
    if (root != .object) return fail(allocator, "cannot read the HookRequest on stdin: not a JSON object", .{});
    const version = stringAt(root, &.{"apiVersion"});
    if (!std.mem.eql(u8, version, api_version))
        return fail(allocator, "unsupported apiVersion `{s}`: this hook understands `{s}`", .{ version, api_version });
    const kind = stringAt(root, &.{"kind"});
    if (!std.mem.eql(u8, kind, request_kind))
        return fail(allocator, "unexpected kind `{s}`: expected `{s}`", .{ kind, request_kind });

    const response: Response = blk: {
        const rules = compileSettings(allocator, root.object.get("settings")) catch |e| switch (e) {
            error.Hook => if (validate)
                break :blk .{ .allowed = false, .message = failure }
            else
                // A misconfigured rule never decides anything: a hook error, as in the Rust SDK.
                return e,
            else => return e,
        };
        if (validate) break :blk .{ .allowed = true };
        break :blk try check(allocator, root.object.get("workloads"), rules);
    };

    var out = std.ArrayList(u8).init(allocator);
    try std.json.stringify(response, .{}, out.writer());
    try out.append('\n');
    return out.items;
}

/// Reads `{"labels": {key: pattern}}` (null or absent settings mean `{}`, unknown fields are
/// refused) and compiles every pattern, in key order.
fn compileSettings(allocator: Allocator, settings: ?Value) ![]const Rule {
    const s = settings orelse return &.{};
    const fields = switch (s) {
        .null => return &.{},
        .object => |o| o,
        else => return fail(allocator, "invalid settings: expected an object like {{\"labels\": {{\"team\": \"^[a-z-]+$\"}}}}", .{}),
    };
    for (fields.keys()) |name| {
        if (!std.mem.eql(u8, name, "labels"))
            return fail(allocator, "invalid settings: unknown field `{s}`, expected `labels`", .{name});
    }
    const labels = switch (fields.get("labels") orelse return &.{}) {
        .object => |o| o,
        else => return fail(allocator, "invalid settings: `labels` must map label keys to regular expressions (strings)", .{}),
    };
    const keys = try allocator.dupe([]const u8, labels.keys());
    std.mem.sort([]const u8, keys, {}, struct {
        fn lessThan(_: void, a: []const u8, b: []const u8) bool {
            return std.mem.lessThan(u8, a, b);
        }
    }.lessThan);
    var rules = try std.ArrayList(Rule).initCapacity(allocator, keys.len);
    for (keys) |key| {
        const pattern = switch (labels.get(key).?) {
            .string => |p| p,
            else => return fail(allocator, "invalid settings: labels.{s}: expected a string (a regular expression)", .{key}),
        };
        var diag: []const u8 = "";
        const re = regex.compile(allocator, pattern, &diag) catch |e| switch (e) {
            error.InvalidPattern => return fail(allocator, "labels.{s}: `{s}` is not a valid regular expression: {s}", .{ key, pattern, diag }),
            else => return e,
        };
        rules.appendAssumeCapacity(.{ .key = key, .pattern = re });
    }
    return rules.items;
}

/// Applies the rule to every workload and collects every violation.
fn check(allocator: Allocator, workloads_value: ?Value, rules: []const Rule) !Response {
    const workloads: []const Value = if (workloads_value) |w| switch (w) {
        .array => |a| a.items,
        .null => &.{},
        else => return fail(allocator, "cannot read the HookRequest on stdin: `workloads` is not an array", .{}),
    } else &.{};
    var violations = std.ArrayList(Violation).init(allocator);
    for (workloads) |workload| {
        const at = WorkloadRef{
            .kind = stringAt(workload, &.{"kind"}),
            .namespace = stringAt(workload, &.{ "metadata", "namespace" }),
            .name = stringAt(workload, &.{ "metadata", "name" }),
        };
        try checkLabels(allocator, &violations, rules, at, "metadata.labels", get(workload, &.{ "metadata", "labels" }));

        const is_cronjob = std.mem.eql(u8, at.kind, "CronJob");
        const path = if (is_cronjob) "spec.jobTemplate.spec.template" else "spec.template";
        const template = (if (is_cronjob)
            get(workload, &.{ "spec", "jobTemplate", "spec", "template" })
        else
            get(workload, &.{ "spec", "template" })) orelse continue;
        if (template != .object) continue;

        const field = try std.fmt.allocPrint(allocator, "{s}.metadata.labels", .{path});
        try checkLabels(allocator, &violations, rules, at, field, get(template, &.{ "metadata", "labels" }));

        for ([_][]const u8{ "initContainers", "containers" }) |list| {
            const containers = switch (get(template, &.{ "spec", list }) orelse continue) {
                .array => |a| a.items,
                else => continue,
            };
            for (containers, 0..) |container, i| {
                const image = stringAt(container, &.{"image"});
                if (isImmutableReference(image)) continue;
                try violations.append(.{
                    .workload = at,
                    .field = try std.fmt.allocPrint(allocator, "{s}.spec.{s}[{d}].image", .{ path, list, i }),
                    .message = try std.fmt.allocPrint(allocator, "container `{s}`: {s}", .{
                        stringAt(container, &.{"name"}),
                        try imageProblem(allocator, image),
                    }),
                });
            }
        }
    }
    if (violations.items.len == 0) return .{ .allowed = true };
    return .{
        .allowed = false,
        .message = try std.fmt.allocPrint(
            allocator,
            "{d} problems with labels or images; fix the manifests and release again",
            .{violations.items.len},
        ),
        .violations = violations.items,
    };
}

fn checkLabels(
    allocator: Allocator,
    violations: *std.ArrayList(Violation),
    rules: []const Rule,
    at: WorkloadRef,
    field: []const u8,
    labels_value: ?Value,
) !void {
    const labels: ?std.json.ObjectMap = if (labels_value) |v| switch (v) {
        .object => |o| o,
        else => null,
    } else null;
    for (rules) |rule| {
        const value = if (labels) |l| l.get(rule.key) else null;
        const message = if (value) |v| blk: {
            const text = try labelText(allocator, v);
            if (try rule.pattern.isMatch(allocator, text)) continue;
            break :blk try std.fmt.allocPrint(allocator, "label `{s}={s}` does not match `{s}`", .{ rule.key, text, rule.pattern.source });
        } else try std.fmt.allocPrint(allocator, "missing label `{s}`", .{rule.key});
        try violations.append(.{
            .workload = at,
            .field = try std.fmt.allocPrint(allocator, "{s}.{s}", .{ field, rule.key }),
            .message = message,
        });
    }
}

/// The value at a path of object keys, or null when a step is missing or not an object.
fn get(value: Value, keys: []const []const u8) ?Value {
    var v = value;
    for (keys) |key| {
        v = switch (v) {
            .object => |o| o.get(key) orelse return null,
            else => return null,
        };
    }
    return v;
}

/// The string at a path, or "" when it is missing or not a string.
fn stringAt(value: Value, keys: []const []const u8) []const u8 {
    const v = get(value, keys) orelse return "";
    return switch (v) {
        .string => |s| s,
        else => "",
    };
}

/// A label's value as text: strings as they are, anything else as its JSON.
fn labelText(allocator: Allocator, value: Value) ![]const u8 {
    if (value == .string) return value.string;
    var out = std.ArrayList(u8).init(allocator);
    try std.json.stringifyMaxDepth(value, .{}, out.writer(), null);
    return out.items;
}

// ---------------------------------------------------------------------------------------------
// Image references, as in hooks-sdk's helpers
// ---------------------------------------------------------------------------------------------

fn isLowerHex(s: []const u8) bool {
    for (s) |c| switch (c) {
        '0'...'9', 'a'...'f' => {},
        else => return false,
    };
    return true;
}

/// The digest after the last `@`, when it is `sha256:` and 64 lower-case hex digits.
fn imageDigest(reference: []const u8) ?[]const u8 {
    const at = std.mem.lastIndexOfScalar(u8, reference, '@') orelse return null;
    const digest = reference[at + 1 ..];
    if (!std.mem.startsWith(u8, digest, "sha256:")) return null;
    const hex = digest["sha256:".len..];
    return if (hex.len == 64 and isLowerHex(hex)) digest else null;
}

/// The tag: after the last `:` of the last path segment, before any `@` (a `:` in the first
/// segment is a registry port).
fn imageTag(reference: []const u8) ?[]const u8 {
    const name = if (std.mem.indexOfScalar(u8, reference, '@')) |i| reference[0..i] else reference;
    const last_segment = if (std.mem.lastIndexOfScalar(u8, name, '/')) |i| i + 1 else 0;
    const colon = std.mem.lastIndexOfScalar(u8, name[last_segment..], ':') orelse return null;
    return name[last_segment + colon + 1 ..];
}

fn isCommitTag(tag: []const u8) bool {
    return tag.len == 40 and isLowerHex(tag);
}

fn isImmutableReference(reference: []const u8) bool {
    if (imageDigest(reference) != null) return true;
    const tag = imageTag(reference) orelse return false;
    return isCommitTag(tag);
}

fn imageProblem(allocator: Allocator, image: []const u8) ![]const u8 {
    if (image.len == 0) return "has no image";
    const tag = imageTag(image);
    if (tag == null and imageDigest(image) == null)
        return std.fmt.allocPrint(allocator, "image `{s}` has no tag, which means `latest`; {s}", .{ image, pin_advice });
    if (tag != null and std.mem.eql(u8, tag.?, "latest"))
        return std.fmt.allocPrint(allocator, "image `{s}` uses `latest`, which changes under running pods; {s}", .{ image, pin_advice });
    return std.fmt.allocPrint(allocator, "image `{s}` uses a tag that can be moved; {s}", .{ image, pin_advice });
}

test "image references" {
    const d = "sha256:" ++ "a" ** 64;
    try std.testing.expect(isImmutableReference("localhost:5000/acme/web:v1@" ++ d));
    try std.testing.expectEqualStrings("v1", imageTag("localhost:5000/acme/web:v1@" ++ d).?);
    try std.testing.expect(imageTag("localhost:5000/web") == null);
    try std.testing.expect(imageDigest("web@sha256:abc") == null);
    try std.testing.expect(isImmutableReference("r/web:3f2a9c1e0b7d4a5f8e6c2b1a0d9f8e7c6b5a4d3e"));
    try std.testing.expect(!isImmutableReference("r/web:latest"));
    try std.testing.expect(!isImmutableReference("r/web"));
    try std.testing.expect(!isImmutableReference("localhost:5000/web"));
}

test {
    _ = regex;
}
