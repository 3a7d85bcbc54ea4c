import { getMetadataStorage, type MetadataStorage, ValidationTypes } from 'class-validator';
import type { ValidationArguments } from 'class-validator';
import { TransformationType } from 'class-transformer';
import { defaultMetadataStorage } from 'class-transformer/cjs/storage.js';

type ValidationMetadata = ReturnType<MetadataStorage['getTargetValidationMetadatas']>[number];
type Constructor = new () => object;

/** One property's rules, as class-validator would run them on a valid payload. */
interface PropertyPlan {
  readonly name: string;
  /** `@IsOptional()`, `@ValidateIf()`: every one must pass for the checks to run. */
  readonly conditions: readonly ((object: object, value: unknown) => boolean)[];
  readonly checks: readonly {
    readonly validate: (value: unknown, args: ValidationArguments) => unknown;
    readonly constraints: unknown[];
  }[];
}

/**
 * A DTO class's validation, compiled once: the accept path of Nest's ValidationPipe (with
 * `transform` and `whitelist`) for flat payloads, without class-transformer's generic copy and
 * class-validator's per-call metadata lookup, error objects and promises.
 *
 * {@link accept} returns the DTO instance the pipe would return, or `undefined` whenever it
 * cannot vouch for the pipe's exact result: a check failed (the pipe then builds its precise
 * errors), a property holds an object or an array, or a rule could be asynchronous. Classes
 * whose rules it does not know (nested, each, promise, async constraints, class-transformer
 * decorators, accessors) compile to `undefined` and always take the pipe's path.
 */
export class CompiledValidation {
  /** Payload keys without rules: whether class-transformer has metadata for them (bounded). */
  private readonly strippable = new Map<string, boolean>();

  private constructor(
    private readonly metatype: Constructor,
    private readonly properties: readonly PropertyPlan[],
    private readonly whitelisted: ReadonlySet<string>,
  ) {}

  static compile(metatype: Constructor): CompiledValidation | undefined {
    const metadatas = getMetadataStorage().getTargetValidationMetadatas(
      metatype,
      '',
      false,
      false,
      undefined,
    );
    // forbidUnknownValues: a class without rules is an error the pipe reports
    if (metadatas.length === 0) return undefined;
    if (defaultMetadataStorage.getStrategy(metatype) !== 'none') return undefined;
    if (hasAccessors(metatype.prototype as object)) return undefined;
    const byProperty = new Map<string, ValidationMetadata[]>();
    for (const metadata of metadatas) {
      const list = byProperty.get(metadata.propertyName) ?? [];
      list.push(metadata);
      byProperty.set(metadata.propertyName, list);
    }
    const properties: PropertyPlan[] = [];
    for (const [name, list] of byProperty) {
      if (hasTransformerMetadata(metatype, name)) return undefined;
      const plan = compileProperty(name, list);
      if (!plan) return undefined;
      properties.push(plan);
    }
    return new CompiledValidation(metatype, properties, new Set(byProperty.keys()));
  }

  /** The validated DTO instance, or `undefined`: let the full pipe decide. */
  accept(value: unknown): object | undefined {
    if (typeof value !== 'object' || value === null) return undefined;
    // a plain object (of any realm: its prototype's prototype is null), not an array or instance
    const prototype = Object.getPrototypeOf(value) as object | null;
    if (prototype !== null && Object.getPrototypeOf(prototype) !== null) return undefined;
    const source = value as Record<string, unknown>;
    const entity = new this.metatype() as Record<string, unknown>;
    // whitelist: what the constructor set without a rule goes, like the pipe's copy would
    for (const key of Object.keys(entity)) if (!this.whitelisted.has(key)) delete entity[key];
    for (const key of Object.keys(source)) {
      if (key === '__proto__' || key === 'constructor' || key === 'prototype') return undefined;
      const item = source[key];
      if (this.whitelisted.has(key)) {
        if (typeof item === 'object' && item !== null) return undefined;
        if (typeof entity[key] === 'function') return undefined;
        entity[key] = item;
      } else if (!this.isStrippable(key)) return undefined;
    }
    for (const property of this.properties) {
      const item = entity[property.name];
      if (!property.conditions.every((condition) => condition(entity, item))) continue;
      for (const check of property.checks) {
        const valid = check.validate(item, {
          targetName: this.metatype.name,
          property: property.name,
          object: entity,
          value: item,
          constraints: check.constraints,
        });
        if (typeof valid === 'object' && valid !== null) return undefined; // a promise
        if (!valid) return undefined;
      }
    }
    return entity;
  }

  /** A key without rules is dropped, unless class-transformer would do something with it. */
  private isStrippable(key: string): boolean {
    let strippable = this.strippable.get(key);
    if (strippable === undefined) {
      strippable = !hasTransformerMetadata(this.metatype, key);
      if (this.strippable.size < 256) this.strippable.set(key, strippable);
    }
    return strippable;
  }
}

function compileProperty(
  name: string,
  metadatas: readonly ValidationMetadata[],
): PropertyPlan | undefined {
  const conditions: PropertyPlan['conditions'][number][] = [];
  const checks: PropertyPlan['checks'][number][] = [];
  const storage = getMetadataStorage();
  for (const metadata of metadatas) {
    if (metadata.each) return undefined;
    switch (metadata.type) {
      case ValidationTypes.WHITELIST:
        continue;
      case ValidationTypes.CONDITIONAL_VALIDATION: {
        const condition = metadata.constraints[0] as (object: object, value: unknown) => boolean;
        if (typeof condition !== 'function') return undefined;
        conditions.push(condition);
        continue;
      }
      case ValidationTypes.CUSTOM_VALIDATION:
      case ValidationTypes.IS_DEFINED: {
        const constraints = storage.getTargetValidatorConstraints(metadata.constraintCls);
        if (constraints.length === 0 || constraints.some((c) => c.async)) return undefined;
        for (const constraint of constraints) {
          const instance = constraint.instance;
          checks.push({
            validate: (value, args) => instance.validate(value, args),
            constraints: metadata.constraints,
          });
        }
        continue;
      }
      default:
        // nested and promise validation: the pipe's path
        return undefined;
    }
  }
  return { name, conditions, checks };
}

function hasTransformerMetadata(metatype: Constructor, key: string): boolean {
  return (
    defaultMetadataStorage.findTypeMetadata(metatype, key) !== undefined ||
    defaultMetadataStorage.findTransformMetadatas(metatype, key, TransformationType.PLAIN_TO_CLASS)
      .length > 0 ||
    defaultMetadataStorage.findExposeMetadata(metatype, key) !== undefined ||
    defaultMetadataStorage.findExcludeMetadata(metatype, key) !== undefined
  );
}

/** A getter or setter on the class: class-transformer's copy would run it. */
function hasAccessors(prototype: object): boolean {
  for (
    let p: object | null = prototype;
    p && p !== Object.prototype;
    p = Object.getPrototypeOf(p) as object | null
  ) {
    for (const descriptor of Object.values(Object.getOwnPropertyDescriptors(p))) {
      if (descriptor.get || descriptor.set) return true;
    }
  }
  return false;
}
