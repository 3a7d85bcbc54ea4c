import { getMetadataStorage, type MetadataStorage } from 'class-validator';
import { defaultMetadataStorage } from 'class-transformer/cjs/storage.js';

type ValidationMetadata = ReturnType<MetadataStorage['getTargetValidationMetadatas']>[number];
// eslint-disable-next-line @typescript-eslint/no-unsafe-function-type -- any class, as Nest's Type
type Constructor = Function;

/** A JSON Schema (draft 7, what AsyncAPI 3 message payloads default to). */
export type JsonSchema = { [key: string]: unknown };

/**
 * The JSON Schema of a payload class, from its class-validator decorators (what the service
 * validates, so what producers must send): types, formats, patterns, bounds, enums, optional
 * properties, nested classes (`@ValidateNested()` with class-transformer's `@Type()`) and arrays
 * (`@IsArray()`, `each: true`). A rule it does not know adds nothing (the schema is then looser
 * than the validation, never stricter). A class without rules is `{ type: 'object' }`.
 */
export function jsonSchemaOf(type: Constructor, seen: Set<Constructor> = new Set()): JsonSchema {
  if (seen.has(type)) return { type: 'object', description: `${type.name} (recursive)` };
  seen.add(type);
  const metadatas = getMetadataStorage().getTargetValidationMetadatas(
    type,
    '',
    false,
    false,
    undefined,
  );
  const byProperty = new Map<string, ValidationMetadata[]>();
  for (const m of metadatas) {
    byProperty.set(m.propertyName, [...(byProperty.get(m.propertyName) ?? []), m]);
  }
  const properties: Record<string, JsonSchema> = {};
  const required: string[] = [];
  for (const [name, rules] of byProperty) {
    const optional = rules.some(
      (r) =>
        r.type === 'conditionalValidation' && (r.name === 'isOptional' || r.name === undefined),
    );
    if (!optional) required.push(name);
    properties[name] = propertySchema(type, name, rules, seen);
  }
  seen.delete(type);
  return {
    type: 'object',
    title: type.name,
    properties,
    ...(required.length > 0 ? { required: required.sort() } : {}),
  };
}

function propertySchema(
  owner: Constructor,
  name: string,
  rules: readonly ValidationMetadata[],
  seen: Set<Constructor>,
): JsonSchema {
  const value: JsonSchema = {};
  const items: JsonSchema = {};
  let isArray = false;
  for (const rule of rules) {
    if (rule.name === 'isArray') {
      isArray = true;
      continue;
    }
    if (rule.type === 'nestedValidation') {
      const nested = defaultMetadataStorage.findTypeMetadata(owner, name)?.typeFunction();
      if (typeof nested === 'function')
        Object.assign(rule.each ? items : value, jsonSchemaOf(nested, seen));
      if (rule.each) isArray = true;
      continue;
    }
    const target = rule.each ? items : value;
    if (rule.each) isArray = true;
    applyRule(target, rule.name, rule.constraints ?? []);
  }
  if (!isArray) return value;
  const { minItems, maxItems, ...rest } = value;
  return {
    type: 'array',
    items,
    ...rest,
    ...(minItems === undefined ? {} : { minItems }),
    ...(maxItems === undefined ? {} : { maxItems }),
  };
}

const FORMATS: Readonly<Record<string, string>> = {
  // class-validator's rule names (its IS_* constants)
  isEmail: 'email',
  isUuid: 'uuid',
  isUrl: 'uri',
  isDateString: 'date-time',
  isIso8601: 'date-time',
  isIp: 'ip',
};

/** Rules that set the schema's type. */
const TYPES: Readonly<Record<string, string>> = {
  isString: 'string',
  isInt: 'integer',
  isBoolean: 'boolean',
  isObject: 'object',
};

/** Rules whose first constraint is a number that becomes one schema keyword. */
const BOUNDS: Readonly<Record<string, string>> = {
  min: 'minimum',
  max: 'maximum',
  minLength: 'minLength',
  maxLength: 'maxLength',
  arrayMinSize: 'minItems',
  arrayMaxSize: 'maxItems',
};

function applyRule(schema: JsonSchema, name: string | undefined, constraints: unknown[]): void {
  const [first, second] = constraints;
  if (name === undefined) return;
  if (TYPES[name] !== undefined) {
    schema.type = TYPES[name];
    return;
  }
  if (BOUNDS[name] !== undefined) {
    if (typeof first === 'number') schema[BOUNDS[name]] = first;
    return;
  }
  switch (name) {
    case 'isNumber':
      schema.type = schema.type === 'integer' ? 'integer' : 'number';
      return;
    case 'isPositive':
      schema.exclusiveMinimum = 0;
      return;
    case 'isNegative':
      schema.exclusiveMaximum = 0;
      return;
    case 'isLength':
      if (typeof first === 'number') schema.minLength = first;
      if (typeof second === 'number') schema.maxLength = second;
      return;
    case 'arrayMinSize':
      if (typeof first === 'number') schema.minItems = first;
      return;
    case 'arrayMaxSize':
      if (typeof first === 'number') schema.maxItems = first;
      return;
    case 'matches':
      if (first instanceof RegExp) schema.pattern = first.source;
      else if (typeof first === 'string') schema.pattern = first;
      return;
    case 'isIn':
      if (Array.isArray(first)) schema.enum = first;
      return;
    case 'isEnum':
      if (typeof first === 'object' && first !== null) {
        // a TypeScript enum: its values (a numeric enum also maps names back to numbers)
        const values = Object.entries(first as Record<string, unknown>)
          .filter(([key]) => !/^\d+$/.test(key))
          .map(([, v]) => v);
        schema.enum = values;
      }
      return;
    case 'equals':
      schema.const = first;
      return;
    case 'isNotEmpty':
      if (schema.type === 'string' || schema.type === undefined) schema.minLength ??= 1;
      return;
    default:
      if (FORMATS[name] !== undefined) {
        schema.type = 'string';
        schema.format = FORMATS[name];
      }
  }
}
