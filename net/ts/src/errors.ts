// Error classes of the SDK: ProtocolError (bad bytes), HandshakeError (hello refused or failed), ServerError (an Error message), ClosedError.

/** Base class of every error this SDK throws or reports. */
export class OxworldError extends Error {
  override name = "OxworldError";
}

/** What went wrong in bytes received (or about to be sent). */
export type ProtocolErrorKind =
  | "Truncated"
  | "LengthAttack"
  | "UnknownType"
  | "UnknownTag"
  | "BadUtf8"
  | "TooDeep"
  | "OverBudget"
  | "Trailing"
  | "Invalid"
  | "Hello"
  | "Handshake"
  | "Record"
  | "Auth"
  | "TooLarge"
  | "Replica"
  | "Transport";

/**
 * The peer sent bytes that do not follow PROTOCOL.md (a message that does not decode, a bad
 * record, a record that fails authentication, an attribute change that does not fit the
 * replica). Fatal for the connection.
 */
export class ProtocolError extends OxworldError {
  override name = "ProtocolError";
  /** Machine-readable category, named like the Rust decoder's errors. */
  readonly kind: ProtocolErrorKind;
  constructor(kind: ProtocolErrorKind, message: string) {
    super(message);
    this.kind = kind;
  }
}

/** Status byte of a server hello (PROTOCOL.md 2.4). */
export const HelloStatus = {
  Ok: 0,
  Malformed: 1,
  UnsupportedVersion: 2,
  ModeRefused: 3,
  HandshakeFailed: 4,
} as const;

const STATUS_NAMES: Record<number, string> = {
  1: "Malformed",
  2: "UnsupportedVersion",
  3: "ModeRefused",
  4: "HandshakeFailed",
};

/**
 * The channel could not be opened: the gate refused the hello (`status` set, with the gate's
 * `reason`), or the server hello was not valid, or the Noise handshake failed. A refusal
 * (status 1-4) is permanent: reconnecting with the same settings fails the same way.
 */
export class HandshakeError extends ProtocolError {
  override name = "HandshakeError";
  /** The server hello's status (1-4) when the gate refused; undefined for other failures. */
  readonly status: number | undefined;
  /** The status's name (`HandshakeFailed`, ...), when `status` is set. */
  readonly statusName: string | undefined;
  /** The gate's mode byte when it refused (0 plain, 1 Noise NK). */
  readonly gateMode: number | undefined;
  /** The gate's reason text (refusals), or a description. */
  readonly reason: string;
  constructor(message: string, refusal?: { status: number; reason: string; gateMode: number }) {
    super(refusal ? "Hello" : "Handshake", message);
    this.status = refusal?.status;
    this.statusName = refusal ? (STATUS_NAMES[refusal.status] ?? "Malformed") : undefined;
    this.gateMode = refusal?.gateMode;
    this.reason = refusal?.reason ?? message;
  }
}

/** Error codes of the `Error` message (PROTOCOL.md section 8). Unknown codes may arrive. */
export const ErrorCode = {
  UnknownEntity: 1,
  UnknownMethod: 2,
  NotExposed: 3,
  BadArguments: 4,
  NotAddressable: 5,
  Malformed: 6,
  Unavailable: 7,
  Failed: 8,
  Idle: 9,
  RateLimited: 10,
  InvalidPosition: 11,
  Kicked: 12,
  /** A `Resume` was refused (revision 2.2); a boot entity follows: log in. */
  ResumeRefused: 13,
} as const;

/** The name of an error code (`"Unknown(99)"` for codes this SDK does not know). */
export function errorCodeName(code: number): string {
  for (const [name, n] of Object.entries(ErrorCode)) {
    if (n === code) return name;
  }
  return `Unknown(${code})`;
}

/** An `Error` message from the server: a call failed, or the gate's last word before closing. */
export class ServerError extends OxworldError {
  override name = "ServerError";
  /** The wire code (see {@link ErrorCode}). */
  readonly code: number;
  /** The code's name (`NotExposed`, ...). */
  readonly codeName: string;
  /** The failed call's target as 32 hex digits (all zeros: none). */
  readonly target: string;
  /** The failed call's method id (0: none). */
  readonly method: number;
  /** The method's name, when this client called a method with that id. */
  readonly methodName: string | undefined;
  /** The server's human-readable reason (not stable; do not parse). */
  readonly reason: string;
  constructor(code: number, target: string, method: number, reason: string, methodName?: string) {
    const codeName = errorCodeName(code);
    super(`${codeName} (${code})${methodName !== undefined ? ` calling ${methodName}` : ""}: ${reason}`);
    this.code = code;
    this.codeName = codeName;
    this.target = target;
    this.method = method;
    this.methodName = methodName;
    this.reason = reason;
  }

  /** True for the errors after which the gate closes the connection (NIL target, or Kicked). */
  get isFarewell(): boolean {
    return this.target === "00000000000000000000000000000000" || this.code === ErrorCode.Kicked;
  }
}

/** The connection is closed (or was never open): `reason` says why. */
export class ClosedError extends OxworldError {
  override name = "ClosedError";
  /** Why: the server's last word when it gave one, else what the transport reported. */
  readonly reason: string;
  /** The server's farewell `Error` (Idle, Kicked, Malformed, ...), when there was one. */
  readonly serverError: ServerError | undefined;
  constructor(reason: string, serverError?: ServerError) {
    super(`the connection is closed: ${reason}`);
    this.reason = reason;
    this.serverError = serverError;
  }
}
